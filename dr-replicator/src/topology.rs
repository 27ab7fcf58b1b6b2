//! The DR topology file: every region of a deployment, how to reach its replicas, and (for a
//! deployment on one machine, written by `deploy/local/`) how to start, partition and heal it.
//! `tandem dr ...` reads it from `--topology FILE` / `TANDEM_DR_TOPOLOGY`.
//!
//! ```toml
//! [regions.eu-west]
//! endpoints = ["http://127.0.0.1:7101", "http://127.0.0.1:7102"]
//!
//! [regions.eu-west.local]          # optional; used by `tandem dr drill`
//! pid_dir = "/abs/deploy/local/run/eu-west/pids"   # one file per process of the region
//! start = ["/abs/deploy/local/region.sh", "start", "eu-west"]
//! partition = ["/abs/deploy/local/region.sh", "partition", "eu-west"]
//! heal = ["/abs/deploy/local/region.sh", "heal", "eu-west"]
//! postgres_url = "postgres://postgres@127.0.0.1:7140/tandem"   # its store (isolated drills)
//! postgres_url = "postgres://postgres@127.0.0.1:7130/tandem"   # read by `drill --mode isolated`
//!
//! [regions.us-east]
//! endpoints = ["http://127.0.0.1:7201"]
//! ```
//!
//! Rules (each broken one is reported as `FILE:LINE:COLUMN: what was expected, what was
//! found`): unknown keys are refused; at least one region; a region name is 1 to 63 ASCII
//! letters, digits, `-`, `_` or `.`; `endpoints` is a non-empty list of `http://host:port`
//! (or `host:port`) addresses without repeats; `pid_dir` is an absolute path; each command
//! is a non-empty array whose first element (the program) is not empty; `partition` and
//! `heal` come together; `postgres_url` is not empty.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// Env var naming the topology file when `--topology` is not given.
pub const TOPOLOGY_ENV: &str = "TANDEM_DR_TOPOLOGY";

/// The regions of a deployment, as read from a topology file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Topology {
    /// The file it was read from (for messages); empty when parsed from text.
    pub path: PathBuf,
    /// The regions by name, in name order.
    pub regions: BTreeMap<String, RegionEntry>,
}

/// One region of the topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionEntry {
    /// Its replicas' gRPC addresses, normalized to `http://host:port`, in order of preference.
    pub endpoints: Vec<String>,
    /// How to control it on this machine (`[regions.NAME.local]`); `None` when not given.
    pub local: Option<LocalControl>,
}

/// `[regions.NAME.local]`: how a drill controls a region that runs on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalControl {
    /// Directory holding one file per process of the region, each containing its pid.
    pub pid_dir: PathBuf,
    /// Program and arguments that (re)start the whole region.
    pub start: Vec<String>,
    /// Program and arguments that cut the region off (replication and client traffic);
    /// `None`: this deployment cannot partition the region.
    pub partition: Option<Vec<String>>,
    /// Program and arguments that undo `partition`; given exactly when `partition` is.
    pub heal: Option<Vec<String>>,
    /// The region's PostgreSQL database (`postgres://user@host:port/db`), which
    /// `tandem dr drill --mode isolated` copies (read only); `None`: not given.
    pub postgres_url: Option<String>,
}

/// A topology file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// The file could not be read.
    #[error("cannot read the DR topology file {path}: {detail}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        detail: String,
    },
    /// No file was named.
    #[error(
        "no DR topology file: give --topology FILE or set {TOPOLOGY_ENV} (a TOML file with a [regions.NAME] table per region holding `endpoints = [\"http://host:port\", ...]`)"
    )]
    Missing,
    /// The file's content breaks a rule; `line`/`column` count from 1.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// The file (`<topology>` when parsed from text).
        path: String,
        /// Line of the offending value.
        line: usize,
        /// Column of the offending value (in characters).
        column: usize,
        /// What was expected and what was found (naming the key path).
        message: String,
    },
    /// A region asked for by name is not in the topology.
    #[error("region `{name}` is not in the DR topology {path} (its regions: {known})")]
    UnknownRegion {
        /// The name asked for.
        name: String,
        /// The file.
        path: String,
        /// The regions it has, comma-separated.
        known: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    regions: Spanned<BTreeMap<Spanned<String>, RawRegion>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegion {
    endpoints: Spanned<Vec<Spanned<String>>>,
    local: Option<RawLocal>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocal {
    pid_dir: Spanned<String>,
    start: Spanned<Vec<Spanned<String>>>,
    partition: Option<Spanned<Vec<Spanned<String>>>>,
    heal: Option<Spanned<Vec<Spanned<String>>>>,
    postgres_url: Option<Spanned<String>>,
}

impl Topology {
    /// Reads and checks the file at `path` (see the module docs for the rules).
    ///
    /// Errors: [`TopologyError::Read`], [`TopologyError::Invalid`] (with the line and column
    /// of the first offending value).
    pub fn load(path: &Path) -> Result<Topology, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|error| TopologyError::Read {
            path: path.display().to_string(),
            detail: error.to_string(),
        })?;
        Topology::parse(&text, path)
    }

    /// Reads the file named by `flag`, else by [`TOPOLOGY_ENV`]; [`TopologyError::Missing`]
    /// when neither is set.
    pub fn load_from(flag: Option<&Path>) -> Result<Topology, TopologyError> {
        match flag {
            Some(path) => Topology::load(path),
            None => match std::env::var_os(TOPOLOGY_ENV) {
                Some(path) if !path.is_empty() => Topology::load(Path::new(&path)),
                _ => Err(TopologyError::Missing),
            },
        }
    }

    /// Parses and checks `text`; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Topology, TopologyError> {
        let locate = Locator { text, path };
        let raw: RawTopology = toml::from_str(text).map_err(|error| {
            locate.error(error.span().unwrap_or(0..0), error.message().trim_end())
        })?;
        let regions_span = raw.regions.span();
        let raw_regions = raw.regions.into_inner();
        if raw_regions.is_empty() {
            return Err(locate.error(
                regions_span,
                "`regions`: expected at least one region ([regions.NAME] with `endpoints`), found none",
            ));
        }
        let mut regions = BTreeMap::new();
        for (name, region) in raw_regions {
            check_region_name(&name, &locate)?;
            let key = format!("regions.{}", name.get_ref());
            let entry = RegionEntry {
                endpoints: endpoints(&key, region.endpoints, &locate)?,
                local: region
                    .local
                    .map(|local| local_control(&key, local, &locate))
                    .transpose()?,
            };
            regions.insert(name.into_inner(), entry);
        }
        Ok(Topology {
            path: path.to_path_buf(),
            regions,
        })
    }

    /// The region named `name`, or [`TopologyError::UnknownRegion`] listing the known ones.
    pub fn region(&self, name: &str) -> Result<&RegionEntry, TopologyError> {
        self.regions
            .get(name)
            .ok_or_else(|| TopologyError::UnknownRegion {
                name: name.to_string(),
                path: self.path.display().to_string(),
                known: self.names().join(", "),
            })
    }

    /// The region names in order.
    pub fn names(&self) -> Vec<String> {
        self.regions.keys().cloned().collect()
    }
}

/// Turns byte spans of the file into `FILE:LINE:COLUMN` errors.
struct Locator<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Locator<'_> {
    fn error(&self, span: Range<usize>, message: impl Into<String>) -> TopologyError {
        let (line, column) = line_column(self.text, span.start);
        let path = self.path.display().to_string();
        TopologyError::Invalid {
            path: if path.is_empty() {
                "<topology>".to_string()
            } else {
                path
            },
            line,
            column,
            message: message.into(),
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |index| index + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn check_region_name(name: &Spanned<String>, locate: &Locator<'_>) -> Result<(), TopologyError> {
    let text = name.get_ref();
    let valid = !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(locate.error(
            name.span(),
            format!(
                "`regions`: expected a region name of 1 to 63 ASCII letters, digits, `-`, `_` or `.`, found `{text}`"
            ),
        ))
    }
}

fn endpoints(
    key: &str,
    list: Spanned<Vec<Spanned<String>>>,
    locate: &Locator<'_>,
) -> Result<Vec<String>, TopologyError> {
    let span = list.span();
    let list = list.into_inner();
    if list.is_empty() {
        return Err(locate.error(
            span,
            format!(
                "`{key}.endpoints`: expected at least one replica address (http://host:port), found an empty list"
            ),
        ));
    }
    let mut normalized: Vec<String> = Vec::with_capacity(list.len());
    for (index, endpoint) in list.into_iter().enumerate() {
        let field = format!("{key}.endpoints[{index}]");
        let text = endpoint.get_ref();
        let config = tandem_api::ClientConfig::new(text.as_str());
        config
            .check()
            .map_err(|error| locate.error(endpoint.span(), format!("`{field}`: {error}")))?;
        let address = config.endpoint().to_string();
        if normalized.contains(&address) {
            return Err(locate.error(
                endpoint.span(),
                format!("`{field}`: `{address}` is listed twice"),
            ));
        }
        normalized.push(address);
    }
    Ok(normalized)
}

fn local_control(
    key: &str,
    local: RawLocal,
    locate: &Locator<'_>,
) -> Result<LocalControl, TopologyError> {
    let key = format!("{key}.local");
    let pid_dir = PathBuf::from(local.pid_dir.get_ref());
    if !pid_dir.is_absolute() {
        return Err(locate.error(
            local.pid_dir.span(),
            format!(
                "`{key}.pid_dir`: expected an absolute path, found `{}`",
                local.pid_dir.get_ref()
            ),
        ));
    }
    let start = command(&format!("{key}.start"), local.start, locate)?;
    let partition_span = local.partition.as_ref().map(Spanned::span);
    let partition = local
        .partition
        .map(|list| command(&format!("{key}.partition"), list, locate))
        .transpose()?;
    let heal_span = local.heal.as_ref().map(Spanned::span);
    let heal = local
        .heal
        .map(|list| command(&format!("{key}.heal"), list, locate))
        .transpose()?;
    match (partition_span, heal_span) {
        (Some(span), None) => {
            return Err(locate.error(
                span,
                format!(
                    "`{key}.partition`: given without `heal`: expected both (a partition must be undone) or neither"
                ),
            ));
        }
        (None, Some(span)) => {
            return Err(locate.error(
                span,
                format!("`{key}.heal`: given without `partition`: expected both or neither"),
            ));
        }
        _ => {}
    }
    let postgres_url = match local.postgres_url {
        Some(url)
            if !(url.get_ref().starts_with("postgres://")
                || url.get_ref().starts_with("postgresql://")) =>
        {
            return Err(locate.error(
                url.span(),
                format!(
                    "`{key}.postgres_url`: expected a URL postgres://user@host:port/db, found `{}`",
                    url.get_ref()
                ),
            ));
        }
        url => url.map(Spanned::into_inner),
    };
    Ok(LocalControl {
        pid_dir,
        start,
        partition,
        heal,
        postgres_url,
    })
}

fn command(
    key: &str,
    list: Spanned<Vec<Spanned<String>>>,
    locate: &Locator<'_>,
) -> Result<Vec<String>, TopologyError> {
    let span = list.span();
    let list = list.into_inner();
    match list.first() {
        None => Err(locate.error(
            span,
            format!(
                "`{key}`: expected a command as [\"program\", \"arg\", ...], found an empty list"
            ),
        )),
        Some(program) if program.get_ref().trim().is_empty() => Err(locate.error(
            program.span(),
            format!("`{key}[0]`: expected the program to run, found an empty string"),
        )),
        Some(_) => Ok(list.into_iter().map(Spanned::into_inner).collect()),
    }
}

#[cfg(test)]
mod tests;
