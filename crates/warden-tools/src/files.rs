//! File tools confined beneath configured roots.
//!
//! Every path is opened relative to a root directory's file descriptor. On Linux 5.6 and later
//! this uses `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`: the kernel refuses any
//! resolution that leaves the root, whether through `..`, an absolute symlink, a relative symlink
//! climbing out, or `/proc` magic links. Where `openat2` is missing, the path is walked one
//! component at a time with `O_NOFOLLOW`, and every symlink is refused. Either way the check
//! and the open are the same operation, so there is no window between them for a swapped
//! symlink.
//!
//! An absolute argument is accepted only when it lies beneath a root, compared component by
//! component. That is why `/tmp/allowed_evil` is not beneath `/tmp/allowed`, the prefix bypass
//! of the reference filesystem server. NUL bytes are refused. Nothing is URL-decoded, so
//! `..%2f` is just a strange file name.
//!
//! Defends against path traversal and symlink escapes by a caller or by files planted inside a
//! root. It also refuses oversized reads, and binary files are not returned as text.
//!
//! Does not defend against what the roots themselves contain: secrets placed inside a root are
//! readable. Hard links to files outside a root are followed, because a hard link is the file
//! itself; do not give untrusted writers access to a root's filesystem.

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use serde_json::{json, Value};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

/// Settings of the file tools.
#[derive(Debug, Clone)]
pub struct FilesSettings {
    pub roots: Vec<PathBuf>,
    pub writable: bool,
    pub max_file_bytes: u64,
    pub max_entries: usize,
}

struct Root {
    path: PathBuf,
    fd: OwnedFd,
}

pub struct Files {
    roots: Vec<Root>,
    settings: FilesSettings,
    /// openat2 works on this kernel.
    openat2: bool,
}

/// Deepest `search_files` descends.
const MAX_DEPTH: usize = 16;
/// Bytes examined to tell text from binary.
const SNIFF: usize = 8192;

impl Files {
    pub fn new(settings: FilesSettings) -> Result<Files, String> {
        let mut roots = Vec::new();
        for r in &settings.roots {
            let path = std::fs::canonicalize(r).map_err(|e| format!("files root {}: {e}", r.display()))?;
            let fd = rfs::open(&path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| format!("files root {}: {e}", path.display()))?;
            roots.push(Root { path, fd });
        }
        let openat2 = match roots.first() {
            Some(r) => rfs::openat2(&r.fd, ".", OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), ResolveFlags::BENEATH)
                .map(|_| true)
                .unwrap_or(false),
            None => false,
        };
        Ok(Files { roots, settings, openat2 })
    }

    /// `openat2` or the `O_NOFOLLOW` walk, for reports.
    pub fn method(&self) -> &'static str {
        if self.openat2 {
            "openat2(RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS)"
        } else {
            "O_NOFOLLOW component walk"
        }
    }

    #[cfg(test)]
    fn force_walk(&mut self) {
        self.openat2 = false;
    }

    pub fn tools(&self) -> Vec<Value> {
        let path = |d: &str| json!({"type": "string", "description": d});
        let ro = json!({"readOnlyHint": true, "destructiveHint": false, "openWorldHint": false});
        let mut t = vec![
            json!({"name": "read_file", "title": "Read a file",
                "description": format!("Reads a UTF-8 text file beneath the allowed directories ({}). At most {} bytes.", self.root_list(), self.settings.max_file_bytes),
                "inputSchema": {"type": "object", "properties": {"path": path("File path, relative to the first allowed directory or absolute beneath one")}, "required": ["path"], "additionalProperties": false},
                "annotations": ro}),
            json!({"name": "list_directory", "title": "List a directory",
                "description": format!("Lists the entries of a directory beneath the allowed directories ({}).", self.root_list()),
                "inputSchema": {"type": "object", "properties": {"path": path("Directory path; \".\" for the first allowed directory")}, "required": ["path"], "additionalProperties": false},
                "annotations": ro}),
            json!({"name": "search_files", "title": "Search file names",
                "description": "Finds files and directories whose name contains a text (case-insensitive), beneath a directory.",
                "inputSchema": {"type": "object", "properties": {"path": path("Directory to search"), "pattern": {"type": "string", "minLength": 1, "maxLength": 256, "description": "Text the name contains"}}, "required": ["path", "pattern"], "additionalProperties": false},
                "annotations": ro}),
        ];
        if self.settings.writable {
            t.push(json!({"name": "write_file", "title": "Write a file",
                "description": format!("Creates or replaces a UTF-8 text file beneath the allowed directories ({}).", self.root_list()),
                "inputSchema": {"type": "object", "properties": {"path": path("File path"), "content": {"type": "string", "description": "The new content"}}, "required": ["path", "content"], "additionalProperties": false},
                "annotations": {"readOnlyHint": false, "destructiveHint": true, "idempotentHint": true, "openWorldHint": false}}));
        }
        t
    }

    fn root_list(&self) -> String {
        self.roots.iter().map(|r| r.path.display().to_string()).collect::<Vec<_>>().join(", ")
    }

    /// Run a tool; `Ok(None)` when the name is not one of these tools. `Err` is a message for
    /// the caller (a tool error, not a protocol error).
    pub fn call(&self, name: &str, args: &Value) -> Option<Result<String, String>> {
        let s = |k: &str| args.get(k).and_then(Value::as_str).ok_or(format!("{k}: a string is required"));
        Some(match name {
            "read_file" => s("path").and_then(|p| self.read_file(p)),
            "list_directory" => s("path").and_then(|p| self.list_directory(p)),
            "search_files" => s("path").and_then(|p| s("pattern").and_then(|pat| self.search(p, pat))),
            "write_file" if self.settings.writable => {
                s("path").and_then(|p| s("content").and_then(|c| self.write_file(p, c)))
            }
            _ => return None,
        })
    }

    /// The root an argument refers to and the path relative to it.
    fn locate<'a>(&'a self, arg: &str) -> Result<(&'a Root, PathBuf), String> {
        if arg.contains('\0') {
            return Err("path contains a NUL byte".into());
        }
        if arg.is_empty() {
            return Err("path is empty".into());
        }
        let p = Path::new(arg);
        let (root, rel) = if p.is_absolute() {
            // component-wise: /tmp/allowed_evil is not beneath /tmp/allowed
            let root = self
                .roots
                .iter()
                .find(|r| p.starts_with(&r.path))
                .ok_or_else(|| format!("{arg}: outside the allowed directories ({})", self.root_list()))?;
            (root, p.strip_prefix(&root.path).unwrap_or(Path::new("")).to_path_buf())
        } else {
            (&self.roots[0], p.to_path_buf())
        };
        if rel.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(format!("{arg}: \"..\" is not allowed"));
        }
        let rel = if rel.as_os_str().is_empty() { PathBuf::from(".") } else { rel };
        Ok((root, rel))
    }

    /// Open `arg` beneath its root with `flags` (plus CLOEXEC).
    fn open(&self, arg: &str, flags: OFlags, mode: Mode) -> Result<OwnedFd, String> {
        let (root, rel) = self.locate(arg)?;
        let flags = flags | OFlags::CLOEXEC;
        let res = if self.openat2 {
            // symlinks are followed only while they stay beneath the root
            rfs::openat2(&root.fd, &rel, flags, mode, ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS)
        } else {
            walk(&root.fd, &rel, flags | OFlags::NOFOLLOW, mode)
        };
        res.map_err(|e| match e {
            Errno::XDEV | Errno::LOOP => format!("{arg}: leaves the allowed directories (symlink or \"..\")"),
            Errno::NOENT => format!("{arg}: no such file or directory"),
            Errno::NOTDIR => format!("{arg}: not a directory"),
            Errno::ISDIR => format!("{arg}: is a directory"),
            Errno::ACCESS | Errno::PERM => format!("{arg}: permission denied"),
            e => format!("{arg}: {e}"),
        })
    }

    fn read_file(&self, arg: &str) -> Result<String, String> {
        // Non-blocking: opening a FIFO (or a device) placed in a root would otherwise wait for
        // a writer forever; the type check below then refuses anything but a regular file.
        let fd = self.open(arg, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY, Mode::empty())?;
        let st = rfs::fstat(&fd).map_err(|e| format!("{arg}: {e}"))?;
        if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::RegularFile {
            return Err(format!("{arg}: not a regular file"));
        }
        let size = st.st_size as u64;
        if size > self.settings.max_file_bytes {
            return Err(format!("{arg}: {size} bytes, over the {} byte limit", self.settings.max_file_bytes));
        }
        let mut buf = Vec::with_capacity(size as usize);
        std::fs::File::from(fd)
            .take(self.settings.max_file_bytes + 1)
            .read_to_end(&mut buf)
            .map_err(|e| format!("{arg}: {e}"))?;
        if buf.len() as u64 > self.settings.max_file_bytes {
            return Err(format!("{arg}: grew past the {} byte limit while read", self.settings.max_file_bytes));
        }
        if buf[..buf.len().min(SNIFF)].contains(&0) {
            return Err(format!("{arg}: a binary file ({} bytes); not returned as text", buf.len()));
        }
        String::from_utf8(buf).map_err(|_| format!("{arg}: not UTF-8 text; not returned"))
    }

    fn entries(&self, fd: &OwnedFd) -> Result<Vec<(String, bool)>, String> {
        let dir = rfs::Dir::read_from(fd).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for e in dir {
            let e = e.map_err(|e| e.to_string())?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "." || name == ".." {
                continue;
            }
            out.push((name, e.file_type() == rfs::FileType::Directory));
        }
        out.sort();
        Ok(out)
    }

    fn list_directory(&self, arg: &str) -> Result<String, String> {
        let fd = self.open(arg, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
        let entries = self.entries(&fd)?;
        let max = self.settings.max_entries;
        let mut out: Vec<String> =
            entries.iter().take(max).map(|(n, d)| format!("{} {n}", if *d { "[DIR] " } else { "[FILE]" })).collect();
        if entries.len() > max {
            out.push(format!("… {} more entries not shown", entries.len() - max));
        }
        Ok(out.join("\n"))
    }

    fn search(&self, arg: &str, pattern: &str) -> Result<String, String> {
        let needle = pattern.to_lowercase();
        let fd = self.open(arg, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
        let mut found = Vec::new();
        let mut stack = vec![(fd, PathBuf::new(), 0usize)];
        let max = self.settings.max_entries;
        while let Some((dir, at, depth)) = stack.pop() {
            for (name, is_dir) in self.entries(&dir)? {
                let path = at.join(&name);
                if name.to_lowercase().contains(&needle) {
                    if found.len() == max {
                        found.push(format!("… stopped after {max} matches"));
                        return Ok(found.join("\n"));
                    }
                    found.push(path.display().to_string());
                }
                if is_dir && depth < MAX_DEPTH {
                    // never follows symlinks: d_type of a symlink is not Directory, and NOFOLLOW
                    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                    if let Ok(sub) = rfs::openat(&dir, name.as_str(), flags, Mode::empty()) {
                        stack.push((sub, path, depth + 1));
                    }
                }
            }
        }
        if found.is_empty() {
            return Ok(format!("no names containing {pattern:?}"));
        }
        Ok(found.join("\n"))
    }

    fn write_file(&self, arg: &str, content: &str) -> Result<String, String> {
        if content.len() as u64 > self.settings.max_file_bytes {
            return Err(format!("content over the {} byte limit", self.settings.max_file_bytes));
        }
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::NONBLOCK | OFlags::NOCTTY;
        let fd = self.open(arg, flags, Mode::from_raw_mode(0o644))?;
        let st = rfs::fstat(&fd).map_err(|e| format!("{arg}: {e}"))?;
        if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::RegularFile {
            return Err(format!("{arg}: not a regular file"));
        }
        // Truncated only now that it is known to be a regular file.
        rfs::ftruncate(&fd, 0).map_err(|e| format!("{arg}: {e}"))?;
        use std::io::Write;
        std::fs::File::from(fd).write_all(content.as_bytes()).map_err(|e| format!("{arg}: {e}"))?;
        Ok(format!("wrote {} bytes to {arg}", content.len()))
    }
}

/// The fallback: one component at a time, every component opened with `O_NOFOLLOW` (so any
/// symlink fails with ELOOP, or ENOTDIR for an intermediate opened as a directory).
fn walk(root: &OwnedFd, rel: &Path, flags: OFlags, mode: Mode) -> rustix::io::Result<OwnedFd> {
    let parts: Vec<_> = rel.components().filter(|c| !matches!(c, Component::CurDir)).collect();
    let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut cur = rfs::openat(root, ".", dir_flags, Mode::empty())?;
    let Some((last, init)) = parts.split_last() else {
        return rfs::openat(root, ".", flags, mode);
    };
    for c in init {
        match c {
            Component::Normal(n) => cur = rfs::openat(&cur, *n, dir_flags, Mode::empty())?,
            _ => return Err(Errno::XDEV),
        }
    }
    match last {
        Component::Normal(n) => rfs::openat(&cur, *n, flags, mode),
        _ => Err(Errno::XDEV),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn tmp(tag: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("warden-tools-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }

    /// /tmp/x/allowed (root) with a file, a subdir and hostile symlinks; /tmp/x/allowed_evil and
    /// /tmp/x/secret outside it.
    fn setup(tag: &str) -> (Tmp, Files) {
        let t = tmp(tag);
        let root = t.0.join("allowed");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("hello.txt"), "hello world").unwrap();
        std::fs::write(root.join("sub/deep.txt"), "deep").unwrap();
        std::fs::write(root.join("blob.bin"), [0u8, 1, 2, 3]).unwrap();
        std::fs::create_dir_all(t.0.join("allowed_evil")).unwrap();
        std::fs::write(t.0.join("allowed_evil/secret.txt"), "EVIL-SECRET").unwrap();
        std::fs::write(t.0.join("secret.txt"), "OUTSIDE-SECRET").unwrap();
        symlink(t.0.join("secret.txt"), root.join("abs_link")).unwrap();
        symlink("../secret.txt", root.join("rel_link")).unwrap();
        symlink("..", root.join("up")).unwrap();
        symlink("hello.txt", root.join("inside_link")).unwrap();
        let f = Files::new(FilesSettings { roots: vec![root], writable: true, max_file_bytes: 64, max_entries: 100 })
            .unwrap();
        (t, f)
    }

    fn attacks(t: &Tmp) -> Vec<String> {
        let base = t.0.display().to_string();
        vec![
            format!("{base}/allowed_evil/secret.txt"),
            format!("{base}/allowed/../secret.txt"),
            "../secret.txt".into(),
            "sub/../../secret.txt".into(),
            "abs_link".into(),
            "rel_link".into(),
            "up/secret.txt".into(),
            "..%2fsecret.txt".into(),
            "%2e%2e/secret.txt".into(),
            "..\\secret.txt".into(),
            "hello.txt\0../../secret.txt".into(),
            format!("{base}/secret.txt"),
            "/etc/passwd".into(),
            "/proc/self/root/etc/passwd".into(),
        ]
    }

    fn check_all(f: &Files, t: &Tmp) {
        assert_eq!(f.call("read_file", &json!({"path": "hello.txt"})).unwrap().unwrap(), "hello world");
        let abs = t.0.join("allowed/sub/deep.txt").display().to_string();
        assert_eq!(f.call("read_file", &json!({"path": abs})).unwrap().unwrap(), "deep");
        // search does not follow the `up` symlink out of the root
        let s = f.call("search_files", &json!({"path": ".", "pattern": "SECRET"})).unwrap().unwrap();
        assert!(s.starts_with("no names"), "{s}");
        let s = f.call("search_files", &json!({"path": ".", "pattern": "deep"})).unwrap().unwrap();
        assert_eq!(s, "sub/deep.txt");
        for a in attacks(t) {
            let r = f.call("read_file", &json!({"path": a})).unwrap();
            let text = format!("{r:?}");
            assert!(r.is_err(), "{a:?} was read: {text}");
            assert!(!text.contains("SECRET") && !text.contains("root:"), "{a:?}: {text}");
            // a strange but legal name (`..%2fsecret.txt`) may be written, inside the root only
            if f.call("write_file", &json!({"path": a, "content": "pwned"})).unwrap().is_ok() {
                assert!(std::fs::read_to_string(t.0.join("allowed").join(&a)).unwrap() == "pwned", "{a:?}");
            }
        }
        assert!(std::fs::read_to_string(t.0.join("secret.txt")).unwrap() == "OUTSIDE-SECRET");
        // directories: the same confinement
        assert!(f.call("list_directory", &json!({"path": "up"})).unwrap().is_err());
        assert!(f.call("list_directory", &json!({"path": "/tmp"})).unwrap().is_err());
        let l = f.call("list_directory", &json!({"path": "."})).unwrap().unwrap();
        assert!(l.contains("[FILE] hello.txt") && l.contains("[DIR]  sub"), "{l}");
        // caps and binary detection
        assert!(f.call("read_file", &json!({"path": "blob.bin"})).unwrap().unwrap_err().contains("binary"));
        std::fs::write(t.0.join("allowed/big.txt"), "x".repeat(65)).unwrap();
        assert!(f.call("read_file", &json!({"path": "big.txt"})).unwrap().unwrap_err().contains("limit"));
        // writing inside works
        assert!(f.call("write_file", &json!({"path": "new.txt", "content": "ok"})).unwrap().is_ok());
    }

    #[test]
    fn openat2_confines_every_escape() {
        let (t, f) = setup("openat2");
        assert!(f.openat2, "openat2 is expected on this kernel");
        check_all(&f, &t);
        // a symlink that stays inside works with openat2
        assert_eq!(f.call("read_file", &json!({"path": "inside_link"})).unwrap().unwrap(), "hello world");
    }

    #[test]
    fn component_walk_confines_every_escape() {
        let (t, mut f) = setup("walk");
        f.force_walk();
        check_all(&f, &t);
        // the walk refuses every symlink, even one that stays inside
        assert!(f.call("read_file", &json!({"path": "inside_link"})).unwrap().is_err());
        assert!(f.call("write_file", &json!({"path": "inside_link", "content": "x"})).unwrap().is_err());
    }

    /// A FIFO in a root neither blocks a read (no writer ever comes) nor a write (no reader):
    /// both are refused as not regular files, at once.
    #[test]
    fn fifos_in_a_root_are_refused_without_blocking() {
        let (t, f) = setup("fifo");
        let root = t.0.join("allowed");
        rfs::mknodat(rfs::CWD, root.join("pipe"), rfs::FileType::Fifo, Mode::from_raw_mode(0o666), 0).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let read = f.call("read_file", &json!({"path": "pipe"})).unwrap();
            let write = f.call("write_file", &json!({"path": "pipe", "content": "x"})).unwrap();
            let _ = tx.send((read, write));
        });
        let (read, write) = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("neither call blocks");
        assert!(read.unwrap_err().contains("not a regular file"));
        assert!(write.is_err());
        drop(t);
    }

    #[test]
    fn read_only_unless_configured() {
        let (t, _) = setup("ro");
        let f = Files::new(FilesSettings {
            roots: vec![t.0.join("allowed")],
            writable: false,
            max_file_bytes: 64,
            max_entries: 100,
        })
        .unwrap();
        assert!(f.call("write_file", &json!({"path": "x.txt", "content": "x"})).is_none());
        assert!(!f.tools().iter().any(|t| t["name"] == "write_file"));
    }
}
