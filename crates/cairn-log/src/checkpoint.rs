//! Small checkpoint files in Kafka's text format, replaced atomically.
//!
//! ```text
//! 0\n                 version
//! <n>\n               number of entries
//! <entry>\n ...       one per line: "<offset>" or "<epoch> <start_offset>"
//! ```
//!
//! Writes go to `<name>.tmp`, are fdatasync'ed, renamed over `<name>`, and the directory is
//! fsync'ed, so a reader sees either the old or the new file, never a mix. A file that fails
//! to parse is reported as corrupt; callers fall back to a conservative value.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::durability::Fsync;
use crate::error::{IoContext, LogError};

const VERSION: &str = "0";

/// Writes `lines` as a checkpoint file at `path` atomically.
pub(crate) fn write(dir: &File, path: &Path, lines: &[String]) -> Result<(), LogError> {
    let tmp = path.with_extension("tmp");
    let mut text = format!("{VERSION}\n{}\n", lines.len());
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    let mut f = File::create(&tmp).io_ctx("create checkpoint", &tmp)?;
    f.write_all(text.as_bytes())
        .io_ctx("write checkpoint", &tmp)?;
    f.fsync().io_ctx("fsync checkpoint", &tmp)?;
    std::fs::rename(&tmp, path).io_ctx("rename checkpoint", path)?;
    dir.fsync_all().io_ctx("fsync directory", path)?;
    Ok(())
}

/// Reads the entry lines of a checkpoint file; `Ok(None)` if it does not exist.
pub(crate) fn read(path: &Path) -> Result<Option<Vec<String>>, LogError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(LogError::Io {
                op: "read checkpoint",
                path: path.into(),
                source: e,
            });
        }
    };
    let bad = |reason: &str| LogError::CorruptSegment {
        path: path.to_path_buf(),
        position: 0,
        reason: reason.to_string(),
    };
    let mut lines = text.lines();
    if lines.next() != Some(VERSION) {
        return Err(bad("unknown checkpoint version"));
    }
    let n: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| bad("missing entry count"))?;
    let entries: Vec<String> = lines.map(str::to_string).collect();
    if entries.len() != n {
        return Err(bad("entry count does not match"));
    }
    Ok(Some(entries))
}

/// Reads a single-offset checkpoint.
pub(crate) fn read_offset(path: &Path) -> Result<Option<i64>, LogError> {
    match read(path)? {
        None => Ok(None),
        Some(lines) => match lines.as_slice() {
            [l] => l
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| LogError::CorruptSegment {
                    path: path.to_path_buf(),
                    position: 0,
                    reason: format!("bad offset {l:?}"),
                }),
            _ => Err(LogError::CorruptSegment {
                path: path.to_path_buf(),
                position: 0,
                reason: "expected one entry".into(),
            }),
        },
    }
}

/// Writes a single-offset checkpoint.
pub(crate) fn write_offset(dir: &File, path: &Path, offset: i64) -> Result<(), LogError> {
    write(dir, path, &[offset.to_string()])
}

/// Reads `(epoch, start_offset)` pairs.
pub(crate) fn read_epochs(path: &Path) -> Result<Option<Vec<(i32, i64)>>, LogError> {
    let Some(lines) = read(path)? else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(lines.len());
    for l in &lines {
        let mut it = l.split_whitespace();
        let parsed = (|| Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?)))();
        match parsed {
            Some(e) => out.push(e),
            None => {
                return Err(LogError::CorruptSegment {
                    path: path.to_path_buf(),
                    position: 0,
                    reason: format!("bad leader epoch entry {l:?}"),
                });
            }
        }
    }
    Ok(Some(out))
}

/// Writes `(epoch, start_offset)` pairs.
pub(crate) fn write_epochs(dir: &File, path: &Path, epochs: &[(i32, i64)]) -> Result<(), LogError> {
    let lines: Vec<String> = epochs.iter().map(|(e, o)| format!("{e} {o}")).collect();
    write(dir, path, &lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let d = tempfile::tempdir().unwrap();
        let dir = File::open(d.path()).unwrap();
        let p = d.path().join("recovery-point-offset-checkpoint");
        assert_eq!(read_offset(&p).unwrap(), None);
        write_offset(&dir, &p, 42).unwrap();
        assert_eq!(read_offset(&p).unwrap(), Some(42));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "0\n1\n42\n");
        let e = d.path().join("leader-epoch-checkpoint");
        write_epochs(&dir, &e, &[(0, 0), (3, 17)]).unwrap();
        assert_eq!(read_epochs(&e).unwrap(), Some(vec![(0, 0), (3, 17)]));
        std::fs::write(&e, "0\n2\n1 1\n").unwrap();
        assert!(read_epochs(&e).is_err());
    }
}
