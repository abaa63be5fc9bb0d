//! Files an operator edits while Kairo runs (rule scripts, handler JSON,
//! plugin libraries): the one directory listing, and the one reload that
//! keeps the last good version of whatever stops loading.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The files directly in `dir` whose extension is `extension`, sorted.
pub fn files_with_extension(dir: &Path, extension: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(extension) && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Something loaded from a file, known by a key that is unique in the
/// directory (a rule's name, a handler's id, a plugin's name).
pub trait Keyed {
    /// The key.
    fn key(&self) -> &str;
}

impl<T: Keyed + ?Sized> Keyed for std::sync::Arc<T> {
    fn key(&self) -> &str {
        (**self).key()
    }
}

/// What one file gave when loaded: the items that loaded and the problems
/// of those that did not (a file may give both).
pub struct Loaded<T, E> {
    /// The items that loaded.
    pub items: Vec<T>,
    /// Every problem, each naming the file (and line or JSON path).
    pub errors: Vec<E>,
}

/// What a rescan changed.
#[derive(Debug)]
pub struct Rescan<E> {
    /// New files that loaded cleanly.
    pub added: Vec<PathBuf>,
    /// Changed files that loaded cleanly.
    pub updated: Vec<PathBuf>,
    /// Files that are gone, with their items.
    pub removed: Vec<PathBuf>,
    /// New or changed files with problems; their items that did not load
    /// keep their previous version, if any.
    pub failed: Vec<PathBuf>,
    /// Every problem found.
    pub errors: Vec<E>,
}

impl<E> Default for Rescan<E> {
    fn default() -> Self {
        Self {
            added: Vec::new(),
            updated: Vec::new(),
            removed: Vec::new(),
            failed: Vec::new(),
            errors: Vec::new(),
        }
    }
}

impl<E> Rescan<E> {
    /// True when some file was added, changed or removed (the loaded set may differ).
    pub fn changed(&self) -> bool {
        !(self.added.is_empty()
            && self.updated.is_empty()
            && self.removed.is_empty()
            && self.failed.is_empty())
    }
}

struct Source<T> {
    content: Vec<u8>,
    items: Vec<T>,
}

/// The files of one directory with the extension it holds, and what each
/// gave when last loaded.
pub struct SourceDir<T> {
    dir: PathBuf,
    extension: String,
    files: BTreeMap<PathBuf, Source<T>>,
}

impl<T: Keyed + Clone> SourceDir<T> {
    /// Nothing loaded yet from `dir`'s `extension` files.
    pub fn new(dir: impl Into<PathBuf>, extension: &str) -> Self {
        Self {
            dir: dir.into(),
            extension: extension.to_string(),
            files: BTreeMap::new(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Rereads the directory and loads each new or changed file with `load`
    /// (every file when `force`, e.g. after the rules' engine changed). An
    /// item that no longer loads keeps its previous version, if any; a file
    /// that cannot be read keeps everything it gave; a file left unchanged
    /// since it failed is not loaded (and reported) again. `io_error` turns
    /// a listing or read failure into the caller's error.
    pub fn rescan<E>(
        &mut self,
        force: bool,
        mut load: impl FnMut(&Path, &[u8]) -> Loaded<T, E>,
        io_error: impl Fn(&Path, std::io::Error) -> E,
    ) -> Rescan<E> {
        let mut rescan = Rescan::default();
        let paths = match files_with_extension(&self.dir, &self.extension) {
            Ok(paths) => paths,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                rescan.errors.push(io_error(&self.dir, e));
                return rescan;
            }
        };
        let gone: Vec<PathBuf> = (self.files.keys())
            .filter(|p| !paths.contains(p))
            .cloned()
            .collect();
        for path in gone {
            self.files.remove(&path);
            rescan.removed.push(path);
        }
        for path in paths {
            let content = match std::fs::read(&path) {
                Ok(content) => content,
                Err(e) => {
                    rescan.errors.push(io_error(&path, e));
                    continue;
                }
            };
            let previous = self.files.remove(&path);
            if let Some(previous) = previous.as_ref().filter(|p| !force && p.content == content) {
                let kept = Source {
                    content,
                    items: previous.items.clone(),
                };
                self.files.insert(path, kept);
                continue;
            }
            let Loaded { mut items, errors } = load(&path, &content);
            let list = match (&previous, errors.is_empty()) {
                (_, false) => &mut rescan.failed,
                (None, true) => &mut rescan.added,
                (Some(_), true) => &mut rescan.updated,
            };
            list.push(path.clone());
            if !errors.is_empty()
                && let Some(previous) = previous
            {
                let kept = previous
                    .items
                    .into_iter()
                    .filter(|old| !items.iter().any(|new| new.key() == old.key()));
                items.extend(kept.collect::<Vec<_>>());
            }
            rescan.errors.extend(errors);
            self.files.insert(path, Source { content, items });
        }
        rescan
    }

    /// Every loaded item with its file, in file order.
    pub fn items(&self) -> impl Iterator<Item = (&Path, &T)> {
        self.files
            .iter()
            .flat_map(|(path, source)| source.items.iter().map(move |i| (path.as_path(), i)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Item(String, u32);

    impl Keyed for Item {
        fn key(&self) -> &str {
            &self.0
        }
    }

    /// Each line `key=version` is an item; a line `key=bad` fails.
    fn load(path: &Path, content: &[u8]) -> Loaded<Item, String> {
        let mut loaded = Loaded {
            items: Vec::new(),
            errors: Vec::new(),
        };
        for line in String::from_utf8_lossy(content).lines() {
            let (key, version) = line.split_once('=').unwrap();
            match version.parse() {
                Ok(v) => loaded.items.push(Item(key.into(), v)),
                Err(_) => loaded.errors.push(format!("{}: {key}", path.display())),
            }
        }
        loaded
    }

    fn keys(dir: &SourceDir<Item>) -> Vec<(String, u32)> {
        dir.items().map(|(_, i)| (i.0.clone(), i.1)).collect()
    }

    #[test]
    fn what_breaks_keeps_its_last_good_version_and_is_reported_once() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a.src");
        std::fs::write(&file, "x=1\ny=1\n").unwrap();
        std::fs::write(tmp.path().join("ignored.txt"), "z=1\n").unwrap();
        let mut dir = SourceDir::new(tmp.path(), "src");
        let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
        let first = dir.rescan(false, load, io);
        assert_eq!(first.added, vec![file.clone()]);
        assert_eq!(keys(&dir), [("x".into(), 1), ("y".into(), 1)]);

        std::fs::write(&file, "x=2\ny=bad\n").unwrap();
        let broken = dir.rescan(false, load, io);
        assert_eq!((broken.failed.len(), broken.errors.len()), (1, 1));
        assert_eq!(keys(&dir), [("x".into(), 2), ("y".into(), 1)]);
        let again = dir.rescan(false, load, io);
        assert!(!again.changed() && again.errors.is_empty(), "{again:?}");
        assert_eq!(dir.rescan(true, load, io).errors.len(), 1);

        std::fs::remove_file(&file).unwrap();
        assert_eq!(dir.rescan(false, load, io).removed, vec![file]);
        assert!(keys(&dir).is_empty());
    }
}
