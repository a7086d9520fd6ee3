//! Image folders in torchvision's `ImageFolder` layout: `root/<class>/**/<image>`.
//!
//! Samples are numbered exactly as torchvision's `make_dataset` numbers them: classes are
//! the sorted names of the class folders; within a class, folders are visited in the
//! order of `sorted(os.walk(class_dir, followlinks=True))` (sorted by full path string, so
//! `a/x/` comes after `a b/`, which comes after `a/`), and files within a folder sorted by name. A file counts as
//! an image by its extension, compared case-insensitively.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::{DataError, Dataset, Result, Samples, Split};

/// The extensions mep reads (PNG and JPEG).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// The rest of torchvision's `IMG_EXTENSIONS`: torchvision would count these files as
/// samples, so skipping them would shift every later index; they are an error instead.
const UNSUPPORTED_EXTENSIONS: [&str; 6] = ["ppm", "bmp", "pgm", "tif", "tiff", "webp"];

/// Loads an image folder. If `root` holds exactly the folders `train` and `test`, they are
/// the splits (with the same classes); otherwise `root`'s subfolders are the classes and
/// the whole folder is the test split, with no train split.
pub fn load_image_folder(root: impl AsRef<Path>) -> Result<Dataset> {
    let root = root.as_ref();
    let meta = std::fs::metadata(root).map_err(|source| DataError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(DataError::Layout {
            path: root.to_path_buf(),
            msg: "not a folder".to_string(),
        });
    }
    let top = subfolders(root)?;
    let name = root.display().to_string();
    if top.len() == 2 && top.iter().any(|d| d == "train") && top.iter().any(|d| d == "test") {
        let (train_classes, train) = load_split(&root.join("train"))?;
        let (test_classes, test) = load_split(&root.join("test"))?;
        if train_classes != test_classes {
            let only = |a: &[String], b: &[String]| a.iter().filter(|c| !b.contains(c)).cloned().collect::<Vec<_>>();
            return Err(DataError::Layout {
                path: root.to_path_buf(),
                msg: format!(
                    "train and test have different classes (only in train: {:?}; only in test: {:?})",
                    only(&train_classes, &test_classes),
                    only(&test_classes, &train_classes)
                ),
            });
        }
        Ok(Dataset {
            name,
            classes: train_classes,
            train: Some(train),
            test,
        })
    } else {
        let (classes, test) = load_split(root)?;
        Ok(Dataset {
            name,
            classes,
            train: None,
            test,
        })
    }
}

/// The common `(height, width)` of every image in `split`, or a [`DataError::MixedSizes`]
/// naming the first image (in index order) whose size differs from image 0's. Reads only
/// the image headers, in parallel.
pub fn check_uniform_size(split: &Split) -> Result<(usize, usize)> {
    let paths = match &split.samples {
        Samples::InMemory { height, width, .. } => return Ok((*height, *width)),
        Samples::Files(paths) => paths,
    };
    let Some(first) = paths.first() else {
        return Err(DataError::Invalid("the split is empty".to_string()));
    };
    let sizes: Vec<Result<(usize, usize)>> = paths.par_iter().map(|p| header_size(p)).collect();
    let mut expected = None;
    for (path, size) in paths.iter().zip(sizes) {
        let size = size?;
        match expected {
            None => expected = Some(size),
            Some(e) if e != size => {
                return Err(DataError::MixedSizes {
                    path: path.clone(),
                    expected: format!("{}x{} (as {})", e.0, e.1, first.display()),
                    found: format!("{}x{}", size.0, size.1),
                });
            }
            Some(_) => {}
        }
    }
    expected.ok_or_else(|| DataError::Invalid("the split is empty".to_string()))
}

/// `(height, width)` from an image's header.
fn header_size(path: &Path) -> Result<(usize, usize)> {
    let reader = image::ImageReader::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    header_size_with(reader, path)
}

/// `(height, width)` from the header of an image file's bytes, as [`check_uniform_size`]
/// reads it from each file; `path_for_messages` names it in errors.
pub fn header_size_bytes(bytes: &[u8], path_for_messages: &Path) -> Result<(usize, usize)> {
    header_size_with(image::ImageReader::new(std::io::Cursor::new(bytes)), path_for_messages)
}

fn header_size_with<R: std::io::BufRead + std::io::Seek>(
    reader: image::ImageReader<R>,
    path: &Path,
) -> Result<(usize, usize)> {
    let reader = reader.with_guessed_format().map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let (w, h) = reader.into_dimensions().map_err(|e| DataError::Format {
        path: path.to_path_buf(),
        msg: format!("cannot read the image header: {e}"),
    })?;
    Ok((h as usize, w as usize))
}

/// Classes and samples of one split folder, `dir/<class>/**/<image>`.
fn load_split(dir: &Path) -> Result<(Vec<String>, Split)> {
    let classes = subfolders(dir)?;
    if classes.is_empty() {
        return Err(DataError::Layout {
            path: dir.to_path_buf(),
            msg: "no class folders; expected root/<class>/<image> (or root/train and root/test)".to_string(),
        });
    }
    let mut paths = Vec::new();
    let mut labels = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let before = paths.len();
        walk_class(&dir.join(class), &mut paths)?;
        if paths.len() == before {
            return Err(DataError::Layout {
                path: dir.join(class),
                msg: format!(
                    "class folder has no images (extensions {})",
                    IMAGE_EXTENSIONS.join(", ")
                ),
            });
        }
        labels.resize(paths.len(), label);
    }
    Ok((
        classes,
        Split {
            samples: Samples::Files(paths),
            labels,
        },
    ))
}

/// The sorted names of the folders (or links to folders) in `dir`, as torchvision's
/// `find_classes` lists them.
fn subfolders(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in read_dir(dir)? {
        // `Path::is_dir` follows links, like Python's `DirEntry.is_dir()`.
        if entry.is_dir() {
            names.push(file_name(&entry));
        }
    }
    names.sort();
    Ok(names)
}

/// Appends the images under `class_dir` in torchvision's order.
fn walk_class(class_dir: &Path, paths: &mut Vec<PathBuf>) -> Result<()> {
    // Every folder below the class, keyed by the string os.walk would produce for it.
    let mut folders = vec![(class_dir.to_string_lossy().into_owned(), class_dir.to_path_buf())];
    let mut stack = vec![class_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in read_dir(&dir)? {
            if entry.is_dir() {
                // A link back up the tree would loop forever (os.walk loops too, until the
                // path gets too long); refuse it instead.
                if let (Ok(canon), Ok(anc)) = (entry.canonicalize(), dir.canonicalize()) {
                    if anc.starts_with(&canon) {
                        return Err(DataError::Layout {
                            path: entry,
                            msg: "link to a folder above it: the walk would never end".to_string(),
                        });
                    }
                }
                folders.push((entry.to_string_lossy().into_owned(), entry.clone()));
                stack.push(entry);
            }
        }
    }
    // Python compares str by code point, which UTF-8 byte order preserves.
    folders.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, folder) in folders {
        let mut files: Vec<(String, PathBuf)> = read_dir(&folder)?
            .into_iter()
            .filter(|p| !p.is_dir())
            .map(|p| (file_name(&p), p))
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, path) in files {
            let ext = name
                .rsplit_once('.')
                .map(|(_, e)| e.to_ascii_lowercase())
                .unwrap_or_default();
            if IMAGE_EXTENSIONS.contains(&ext.as_str()) {
                paths.push(path);
            } else if UNSUPPORTED_EXTENSIONS.contains(&ext.as_str()) {
                return Err(DataError::Layout {
                    path,
                    msg: format!(
                        "torchvision counts .{ext} files as images but mep reads only {}; convert it, \
                         or indices would differ from torchvision's",
                        IMAGE_EXTENSIONS.join(", ")
                    ),
                });
            }
        }
    }
    Ok(())
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()).map_err(io))
        .collect()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
