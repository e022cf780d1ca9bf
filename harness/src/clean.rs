//! `polycephaly clean [--dry-run] [--only PREFIX,...]`: removes the
//! `/dev/shm` files of regions whose creator and peers are all dead.
//!
//! Only the file form leaves anything behind (a socket-served name and an
//! anonymous memfd go with their last process). A file is a candidate only
//! if it is a regular file of ours (never another user's, never a symbolic
//! link) that starts with the region magic; it is removed only if it opens
//! as a valid region (read-only, [`Observer::open_shm_file`]: no slot, no
//! role, no store) whose creator is dead and whose peer table holds no live
//! process, or if its header never became ready and its creator is dead
//! (nobody can have opened it). Anything else is kept, with the reason. The
//! file unlinked is the one judged: its device and inode are checked again
//! just before `unlink`.

use core::mem::offset_of;
use std::fs;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::process::ExitCode;

use polycephaly::region::layout::{HeaderFixed, MAGIC};
use polycephaly::region::{Observer, OpenError};
use polycephaly::sync::ProcessId;

/// Where named regions of the file form live.
const SHM_DIR: &str = "/dev/shm";

/// The arguments of `clean`.
#[derive(Debug, clap::Args)]
pub(crate) struct CleanArgs {
    /// Say what would be removed, remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Look only at the names that start with one of these prefixes.
    #[arg(long, value_delimiter = ',', value_name = "PREFIX,...")]
    only: Vec<String>,
}

/// What to do with one file.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Remove it: why.
    Remove(String),
    /// Keep it: why.
    Keep(String),
}

/// Runs `clean`: 0 unless a removal failed or `/dev/shm` cannot be read.
pub(crate) fn run(args: &CleanArgs) -> ExitCode {
    let entries = match fs::read_dir(SHM_DIR) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("polycephaly clean: cannot read {SHM_DIR}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let us = rustix::process::geteuid().as_raw();
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| args.only.is_empty() || args.only.iter().any(|p| n.starts_with(p.as_str())))
        .collect();
    names.sort();
    let (mut removed, mut kept, mut others, mut failed) = (0, 0, 0, 0);
    for name in names {
        let path = format!("{SHM_DIR}/{name}");
        // Never follows a link; another user's file is not even opened.
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.file_type().is_file() {
            continue;
        }
        if meta.uid() != us {
            others += 1;
            continue;
        }
        if !has_magic(&path) {
            continue;
        }
        match judge(&name) {
            Verdict::Keep(why) => {
                kept += 1;
                println!("kept     {path}: {why}");
            }
            Verdict::Remove(why) if args.dry_run => {
                removed += 1;
                println!("would remove {path} ({} bytes): {why}", meta.len());
            }
            Verdict::Remove(why) => match remove_same(&path, &meta) {
                Ok(()) => {
                    removed += 1;
                    println!("removed  {path} ({} bytes): {why}", meta.len());
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("polycephaly clean: cannot remove {path}: {e}");
                }
            },
        }
    }
    println!(
        "{removed} {}, {kept} kept{}.",
        if args.dry_run {
            "would be removed"
        } else {
            "removed"
        },
        if others > 0 {
            format!("; {others} file(s) of other users not looked at")
        } else {
            String::new()
        }
    );
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Whether the file starts with the region magic (read with `pread`, no
/// mapping: a short file is just not a region).
fn has_magic(path: &str) -> bool {
    let Ok(f) = open_read_only(path) else {
        return false;
    };
    let mut magic = [0u8; 8];
    f.read_exact_at(&mut magic, 0).is_ok() && magic == MAGIC
}

fn open_read_only(path: &str) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// The creator recorded in a header that never became ready (read with
/// `pread`).
fn creator_of(path: &str) -> Option<ProcessId> {
    let f = open_read_only(path).ok()?;
    let mut fixed = [0u8; size_of::<HeaderFixed>()];
    f.read_exact_at(&mut fixed, 0).ok()?;
    let pid_at = offset_of!(HeaderFixed, creator_pid);
    let start_at = offset_of!(HeaderFixed, creator_start_time);
    let pid = u32::from_ne_bytes(fixed.get(pid_at..pid_at + 4)?.try_into().ok()?);
    let start_time = u64::from_ne_bytes(fixed.get(start_at..start_at + 8)?.try_into().ok()?);
    (pid != 0).then_some(ProcessId { pid, start_time })
}

/// Whether the region `name` (a file of ours with the magic) can go.
fn judge(name: &str) -> Verdict {
    let obs = match Observer::open_shm_file(name) {
        Ok(o) => o,
        Err(OpenError::NotInitialized) => {
            return match creator_of(&format!("{SHM_DIR}/{name}")) {
                Some(c) if !c.is_alive() => {
                    Verdict::Remove(format!("never initialized, creator pid {} dead", c.pid))
                }
                Some(c) => Verdict::Keep(format!("being initialized by pid {} (alive)", c.pid)),
                None => Verdict::Keep("never initialized, creator unknown".into()),
            };
        }
        Err(e) => {
            return Verdict::Keep(format!(
                "not a sound region ({e}); remove it by hand if nothing uses it"
            ));
        }
    };
    let creator = obs.creator();
    if obs.creator_alive() {
        return Verdict::Keep(format!("creator pid {} alive", creator.pid));
    }
    let peers = obs.peers();
    let live: Vec<String> = peers
        .iter()
        .filter(|p| p.alive)
        .map(|p| p.pid.to_string())
        .collect();
    if !live.is_empty() {
        return Verdict::Keep(format!(
            "creator pid {} dead, but live peer(s): pid {}",
            creator.pid,
            live.join(", pid ")
        ));
    }
    Verdict::Remove(format!(
        "creator pid {} dead, no live peer ({} dead in the peer table)",
        creator.pid,
        peers.len()
    ))
}

/// Unlinks `path` if it is still the file `judged` described (same device
/// and inode): a file put in its place since is not touched.
fn remove_same(path: &str, judged: &fs::Metadata) -> std::io::Result<()> {
    let now = fs::symlink_metadata(path)?;
    if now.dev() != judged.dev() || now.ino() != judged.ino() {
        return Err(std::io::Error::other(
            "the file was replaced while it was judged; left alone",
        ));
    }
    fs::remove_file(path)
}
