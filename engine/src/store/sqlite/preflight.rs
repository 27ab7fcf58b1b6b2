//! Checks on the raw file before SQLite opens it: that it exists (or may be created), is a
//! regular file, starts with SQLite's header, and is not shorter than its header says.
//!
//! SQLite itself reports a foreign file only at the first query ("file is not a database")
//! and a truncated one only when a query reaches a missing page; these checks give a precise
//! [`StoreError::Corrupt`] at open instead. Header layout: <https://www.sqlite.org/fileformat.html>.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::PathBuf;

use super::Context;
use super::error::corrupt;
use crate::store::StoreError;

/// The first 16 bytes of every SQLite database file.
const MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// Length of the database header at the start of page 1.
const HEADER_LEN: usize = 100;

/// Checks the file at `context.path` before it is opened. With `create`, a missing file is
/// fine (its parent directories are created); without, it is refused with
/// [`StoreError::Backend`] `no state store at PATH: ...`. A zero-length file is fine (SQLite
/// treats it as an empty database).
pub(super) fn check_file(context: &Context, create: bool) -> Result<(), StoreError> {
    let metadata = match fs::metadata(&context.path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound && create => {
            return create_parent(context);
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(StoreError::Backend {
                location: context.location.clone(),
                detail: format!(
                    "no state store at {}: the file does not exist ({error}); run a workflow first or pass the right state directory",
                    context.location
                ),
            });
        }
        Err(error) => return Err(io_error(context, "reading the file's metadata", error)),
    };
    if !metadata.is_file() {
        return Err(StoreError::Backend {
            location: context.location.clone(),
            detail: "expected a state store file, found a directory or special file".into(),
        });
    }
    if metadata.len() == 0 {
        return Ok(());
    }
    let mut header = Vec::with_capacity(HEADER_LEN);
    let mut file =
        File::open(&context.path).map_err(|error| io_error(context, "opening the file", error))?;
    (&mut file)
        .take(HEADER_LEN as u64)
        .read_to_end(&mut header)
        .map_err(|error| io_error(context, "reading the file header", error))?;
    let file_len = file
        .metadata()
        .map_err(|error| io_error(context, "reading the file's metadata", error))?
        .len();
    check_header(context, &header, file_len)
}

/// Checks the first (up to) 100 bytes of a non-empty file of `file_len` bytes.
fn check_header(context: &Context, header: &[u8], file_len: u64) -> Result<(), StoreError> {
    if !header.starts_with(MAGIC) && !MAGIC.starts_with(header) {
        return Err(corrupt(
            context,
            format!(
                "expected a SQLite database (a Tandem state store) starting with the header `SQLite format 3`, found a file starting with {}",
                describe_bytes(header)
            ),
        ));
    }
    if header.len() < HEADER_LEN {
        return Err(corrupt(
            context,
            format!(
                "truncated: expected at least the {HEADER_LEN}-byte SQLite header, found a file of {file_len} bytes"
            ),
        ));
    }
    // Bytes 16..18: page size (1 means 65536); 24..28: change counter; 28..32: size in
    // pages, valid only when 92..96 (version-valid-for) equals the change counter.
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        size => u64::from(size),
    };
    let change_counter = &header[24..28];
    let page_count = u64::from(u32::from_be_bytes([
        header[28], header[29], header[30], header[31],
    ]));
    let size_is_valid = &header[92..96] == change_counter && page_count > 0;
    if !size_is_valid || !page_size.is_power_of_two() || page_size < 512 {
        return Ok(());
    }
    let expected_len = page_count * page_size;
    if file_len < expected_len && !wal_has_frames(context) {
        return Err(corrupt(
            context,
            format!(
                "truncated: the SQLite header says {page_count} pages of {page_size} bytes ({expected_len} bytes), found a file of {file_len} bytes"
            ),
        ));
    }
    Ok(())
}

/// Whether the write-ahead log next to the file holds data. While it does, the main file
/// may legitimately be shorter than its header says (a checkpoint interrupted by a crash is
/// finished from the log at the next open). Checked after reading the header, so a
/// checkpoint running concurrently is seen.
fn wal_has_frames(context: &Context) -> bool {
    let mut wal = PathBuf::from(context.path.as_os_str());
    wal.as_mut_os_string().push("-wal");
    fs::metadata(wal).is_ok_and(|metadata| metadata.len() > 0)
}

fn create_parent(context: &Context) -> Result<(), StoreError> {
    match context.path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            fs::create_dir_all(parent).map_err(|error| {
                io_error(
                    context,
                    &format!("creating the directory {}", parent.display()),
                    error,
                )
            })
        }
        _ => Ok(()),
    }
}

fn io_error(context: &Context, doing: &str, error: io::Error) -> StoreError {
    StoreError::Backend {
        location: context.location.clone(),
        detail: format!("{doing}: {error}"),
    }
}

/// Up to 16 bytes as text when printable, else as hex, for messages.
fn describe_bytes(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(16)];
    if head
        .iter()
        .all(|byte| byte.is_ascii_graphic() || *byte == b' ')
    {
        format!("`{}`", String::from_utf8_lossy(head))
    } else {
        let hex: Vec<String> = head.iter().map(|byte| format!("{byte:02x}")).collect();
        format!("the bytes {}", hex.join(" "))
    }
}
