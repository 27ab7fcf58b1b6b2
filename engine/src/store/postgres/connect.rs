//! Turning a [`PostgresConfig`] into a connection pool, and naming the server in messages
//! without its password.

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::Host;

use super::{Context, PostgresConfig};
use crate::store::StoreError;

/// Builds the pool (connections open lazily) and the context of a store.
///
/// Errors: [`StoreError::Backend`] when the URL does not parse or the pool size is 0.
pub(super) fn pool(config: &PostgresConfig) -> Result<(Pool, Context), StoreError> {
    let refused = |detail: String| StoreError::Backend {
        location: redact_url(&config.url),
        detail,
    };
    let mut pg_config = tokio_postgres::Config::from_str(&config.url).map_err(|error| {
        refused(format!(
            "expected a PostgreSQL URL like postgres://user:password@host:5432/database (or key=value pairs), found one that does not parse: {error}"
        ))
    })?;
    if config.pool_size == 0 {
        return Err(refused(
            "expected a pool size of at least 1, found 0".into(),
        ));
    }
    pg_config
        .connect_timeout(config.connect_timeout)
        .tcp_user_timeout(config.tcp_user_timeout)
        .application_name(&config.application_name);
    let context = Context {
        location: location(&pg_config),
        retry_for: config.retry_for,
    };
    let manager = Manager::from_config(
        pg_config,
        tokio_postgres::NoTls,
        ManagerConfig {
            // A connection the server closed is noticed by its connection task; anything else
            // shows up as an error of the next query, which is retried.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(config.pool_size)
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(config.connect_timeout))
        .recycle_timeout(Some(config.connect_timeout))
        .build()
        .map_err(|error| refused(format!("building the connection pool: {error}")))?;
    Ok((pool, context))
}

/// `postgres://user@host:port/database` from a parsed configuration: never the password.
fn location(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let host = match host {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            };
            let port = config
                .get_ports()
                .get(index)
                .or(config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            format!("{host}:{port}")
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost:5432".to_string()
    } else {
        hosts.join(",")
    };
    let user = config
        .get_user()
        .map(|user| format!("{user}@"))
        .unwrap_or_default();
    let database = config.get_dbname().or(config.get_user()).unwrap_or("");
    format!("postgres://{user}{hosts}/{database}")
}

/// `url` with any password replaced by `***`: the `user:password@` of a URL, a
/// `password=...` query parameter, or a `password=...` key-value pair.
pub fn redact_url(url: &str) -> String {
    let mut text = url.to_string();
    if let Some(scheme_end) = text.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = text[authority_start..]
            .find(['/', '?'])
            .map_or(text.len(), |offset| authority_start + offset);
        if let Some(at) = text[authority_start..authority_end].rfind('@') {
            let userinfo = &text[authority_start..authority_start + at];
            if let Some(colon) = userinfo.find(':') {
                let start = authority_start + colon + 1;
                text.replace_range(start..authority_start + at, "***");
            }
        }
    }
    let mut redacted = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(index) = rest.find("password=") {
        let value_start = index + "password=".len();
        redacted.push_str(&rest[..value_start]);
        redacted.push_str("***");
        let value = &rest[value_start..];
        let value_len = if let Some(quoted) = value.strip_prefix('\'') {
            // A quoted key-value: up to the closing quote (backslash escapes it).
            let mut escaped = false;
            let end = quoted
                .char_indices()
                .find(|&(_, c)| {
                    let close = c == '\'' && !escaped;
                    escaped = c == '\\' && !escaped;
                    close
                })
                .map_or(quoted.len(), |(offset, _)| offset + 1);
            end + 1
        } else {
            value.find(['&', ' ', '\t', '\n']).unwrap_or(value.len())
        };
        rest = &value[value_len.min(value.len())..];
    }
    redacted.push_str(rest);
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_are_shown_without_passwords() {
        for (url, expected) in [
            (
                "postgres://tandem:s3cr@t@db.example:5432/tandem",
                "postgres://tandem:***@db.example:5432/tandem",
            ),
            (
                "postgresql://u:p@h/d?sslmode=disable&password=x&a=b",
                "postgresql://u:***@h/d?sslmode=disable&password=***&a=b",
            ),
            (
                "host=db user=u password='it\\'s secret' dbname=d",
                "host=db user=u password=*** dbname=d",
            ),
            (
                "host=db password=plain dbname=d",
                "host=db password=*** dbname=d",
            ),
            ("postgres://u@h/d", "postgres://u@h/d"),
        ] {
            assert_eq!(redact_url(url), expected, "{url}");
        }
    }

    #[test]
    fn the_store_location_never_has_the_password() {
        let config =
            tokio_postgres::Config::from_str("postgres://me:pw@10.0.0.1:6543/regions").unwrap();
        assert_eq!(location(&config), "postgres://me@10.0.0.1:6543/regions");
        let config = tokio_postgres::Config::from_str("host=/run/pg user=me").unwrap();
        assert_eq!(location(&config), "postgres://me@/run/pg:5432/me");
    }

    #[test]
    fn a_bad_url_is_refused_with_the_password_hidden() {
        let mut config = PostgresConfig::new("postgres://me:hunter2@host:notaport/db");
        let error = pool(&config).map(|_| ()).unwrap_err();
        let text = error.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("does not parse"), "{text}");
        config.url = "postgres://me@host/db".into();
        config.pool_size = 0;
        let error = pool(&config).map(|_| ()).unwrap_err();
        assert!(error.to_string().contains("pool size"), "{error}");
    }
}
