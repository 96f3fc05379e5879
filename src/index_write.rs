//! The index file's bytes, as gix writes them, made in one buffer.
//!
//! gix serialises an index through a byte-counting writer with a dozen small `write_all` calls
//! per entry, each a real call: for a 20,000-file checkout that was ~300,000 calls and about
//! 30 million instructions, most of a 1-file update's cost (callgrind). Here each entry is
//! appended to one pre-sized `Vec` in a single step. The layout is git's index format version 2
//! (3 when an entry has extended flags), the same bytes as `gix::index::State::write_to` with
//! its default options (tests below compare the two on real indexes); the extensions are
//! still written by gix, whose code for them is not on the hot path.

use gix::index::entry::Flags;
use gix::index::extension;
use gix::index::State;

/// The bytes of `state` as an index file, without the trailing checksum.
pub fn serialize(state: &State) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(size_estimate(state));
    let written = state
        .entries()
        .iter()
        .filter(|e| !e.flags.contains(Flags::REMOVE));
    let extended = written.clone().any(|e| e.flags.contains(Flags::EXTENDED));
    out.extend_from_slice(b"DIRC");
    out.extend_from_slice(&(if extended { 3u32 } else { 2 }).to_be_bytes());
    let count = u32::try_from(written.clone().count()).map_err(|_| too_large())?;
    out.extend_from_slice(&count.to_be_bytes());
    for entry in written {
        append_entry(&mut out, entry, state);
    }
    append_extensions(&mut out, state, count)?;
    Ok(out)
}

/// Where the entries start: after the signature, the version and the entry count.
const HEADER_SIZE: usize = 12;

/// Stat data, mode, id and flags, then the path, NUL-padded to a multiple of 8 bytes (1 to 8
/// NULs) counted from the first entry.
fn append_entry(out: &mut Vec<u8>, entry: &gix::index::Entry, state: &State) {
    let stat = entry.stat;
    let mut fixed = [0u8; 40];
    let words = [
        stat.ctime.secs,
        stat.ctime.nsecs,
        stat.mtime.secs,
        stat.mtime.nsecs,
        stat.dev,
        stat.ino,
        entry.mode.bits(),
        stat.uid,
        stat.gid,
        stat.size,
    ];
    for (slot, word) in fixed.chunks_exact_mut(4).zip(words) {
        slot.copy_from_slice(&word.to_be_bytes());
    }
    out.extend_from_slice(&fixed);
    out.extend_from_slice(entry.id.as_bytes());
    let path = entry.path(state);
    let path_len = path.len().min(Flags::PATH_LEN.bits() as usize) as u16;
    out.extend_from_slice(&(entry.flags.to_storage().bits() | path_len).to_be_bytes());
    if entry.flags.contains(Flags::EXTENDED) {
        // The extended flags at rest are the in-memory bits 29 and 30 moved down by 16.
        let at_rest = (entry.flags & (Flags::INTENT_TO_ADD | Flags::SKIP_WORKTREE)).bits() >> 16;
        out.extend_from_slice(&(at_rest as u16).to_be_bytes());
    }
    out.extend_from_slice(path);
    let padding = 8 - (out.len() - HEADER_SIZE) % 8;
    out.extend_from_slice(&[0u8; 8][..padding]);
}

/// The tree cache and the sparse marker when present, then, as gix does whenever another
/// extension was written, the end-of-index-entry extension that lists them.
fn append_extensions(out: &mut Vec<u8>, state: &State, count: u32) -> std::io::Result<()> {
    let offset_to_extensions = u32::try_from(out.len()).map_err(|_| too_large())?;
    let mut written = Vec::new();
    let mut previous_end = out.len();
    if let Some(tree) = state.tree() {
        tree.write_to(&mut *out)?;
        written.push((extension::tree::SIGNATURE, extension_size(out, previous_end)?));
        previous_end = out.len();
    }
    if state.is_sparse() {
        extension::sparse::write_to(&mut *out)?;
        written.push((extension::sparse::SIGNATURE, extension_size(out, previous_end)?));
    }
    if count > 0 && !written.is_empty() {
        extension::end_of_index_entry::write_to(
            &mut *out,
            state.object_hash(),
            offset_to_extensions,
            written,
        )
        .map_err(std::io::Error::other)?;
    }
    Ok(())
}

/// An extension's size as its header states it: what follows the signature and the size.
fn extension_size(out: &[u8], start: usize) -> std::io::Result<u32> {
    u32::try_from(out.len() - start - extension::MIN_SIZE).map_err(|_| too_large())
}

/// Room for the whole index, so that the buffer is allocated once: 62 bytes of stat data, id
/// and flags per entry, its path and up to 8 bytes of padding, and the extensions (the tree
/// cache, mostly) a small fraction on top; the checksum is appended by the caller.
fn size_estimate(state: &State) -> usize {
    let body = HEADER_SIZE + state.entries().len() * (62 + 2 + 8) + state.path_backing().len();
    body + body / 8 + 64
}

fn too_large() -> std::io::Error {
    std::io::Error::other("the index would be larger than 4 GB")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) {
        let status = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .status()
            .expect("git runs");
        assert!(status.success(), "git {args:?}");
    }

    fn read(path: &Path) -> gix::index::File {
        gix::index::File::at(path, gix::hash::Kind::Sha1, false, Default::default()).unwrap()
    }

    fn gix_bytes(state: &State) -> Vec<u8> {
        let mut expected = Vec::new();
        state
            .write_to(&mut expected, gix::index::write::Options::default())
            .unwrap();
        expected
    }

    /// A real index made by git: nested directories, an intent-to-add and a skip-worktree entry
    /// (which make it version 3), and a conflict's three stages.
    fn index_made_by_git(dir: &Path) -> std::path::PathBuf {
        git(dir, &["init", "-q"]);
        for (i, name) in ["a", "b/c", "b/d/e", "z", "c.txt"].iter().enumerate() {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, format!("{i}\n").repeat(i + 1)).unwrap();
        }
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-q", "-m", "one"]);
        git(dir, &["checkout", "-q", "-b", "other"]);
        std::fs::write(dir.join("c.txt"), "other\n").unwrap();
        git(dir, &["commit", "-q", "-am", "other"]);
        git(dir, &["checkout", "-q", "main"]);
        std::fs::write(dir.join("c.txt"), "main\n").unwrap();
        git(dir, &["commit", "-q", "-am", "main"]);
        let merge = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "merge", "-q", "other"])
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(!merge.status.success(), "the merge conflicts");
        std::fs::write(dir.join("new"), "n\n").unwrap();
        git(dir, &["add", "-N", "new"]);
        git(dir, &["update-index", "--skip-worktree", "b/c"]);
        dir.join(".git/index")
    }

    #[test]
    fn the_bytes_are_what_gix_writes_for_an_index_made_by_git() {
        let dir = tempfile::tempdir().unwrap();
        let index = read(&index_made_by_git(dir.path()));
        assert!(index.entries().iter().any(|e| e.flags.contains(Flags::EXTENDED)));
        assert!(index.entries().iter().any(|e| e.stage_raw() == 3));
        assert_eq!(serialize(&index).unwrap(), gix_bytes(&index));
    }

    #[test]
    fn the_bytes_are_what_gix_writes_with_a_tree_cache_and_removed_entries() {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q"]);
        for name in ["a", "b/c", "b/d/e", "z"] {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, name).unwrap();
        }
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "-q", "-m", "one"]);
        let mut index = read(&dir.path().join(".git/index"));
        assert!(index.tree().is_some(), "git commit writes the tree cache");
        assert_eq!(serialize(&index).unwrap(), gix_bytes(&index));

        index.entries_mut()[1].flags.insert(Flags::REMOVE);
        assert_eq!(serialize(&index).unwrap(), gix_bytes(&index));
    }

    #[test]
    fn a_path_longer_than_the_length_field_is_written_as_gix_writes_it() {
        let mut state = State::new(gix::hash::Kind::Sha1);
        for path in [format!("deep/{}f", "d/".repeat(2100)), "short".into()] {
            state.dangerously_push_entry(
                Default::default(),
                gix::ObjectId::empty_blob(gix::hash::Kind::Sha1),
                Flags::empty(),
                gix::index::entry::Mode::FILE,
                path.as_str().into(),
            );
        }
        state.sort_entries();
        assert_eq!(serialize(&state).unwrap(), gix_bytes(&state));
    }

    #[test]
    fn an_empty_index_is_a_header_alone() {
        let state = State::new(gix::hash::Kind::Sha1);
        assert_eq!(serialize(&state).unwrap(), gix_bytes(&state));
    }
}
