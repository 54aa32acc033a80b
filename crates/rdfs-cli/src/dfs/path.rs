//! Paths as the shell sees them: what the user typed (echoed back in
//! errors), which namenode and absolute path it names, and how it and its
//! children are printed (a URI stays a URI, a relative path stays relative).

use rdfs_common::path::{child, normalize};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Style {
    /// `hdfs://authority/...`; `typed_authority` is empty for `hdfs:///p`.
    Uri {
        typed_authority: String,
    },
    Absolute,
    /// Relative to the working directory.
    Relative {
        cwd: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathArg {
    /// Exactly as typed, for "No such file or directory" errors.
    pub typed: String,
    /// The namenode (`host:port`) holding the path.
    pub authority: String,
    /// Absolute and normalized.
    pub path: String,
    style: Style,
}

/// Characters that make an argument a glob pattern.
pub fn is_glob(text: &str) -> bool {
    text.contains(['*', '?', '[', '{'])
}

impl PathArg {
    /// Parses an argument: `hdfs://host:port/p`, `hdfs:///p`, `/p`, or `p`
    /// relative to `cwd`.
    pub fn parse(arg: &str, default_authority: &str, cwd: &str) -> Result<Self, String> {
        if arg.is_empty() {
            return Err("Can not create a Path from an empty string".to_string());
        }
        if let Some((scheme, rest)) = split_scheme(arg) {
            if scheme != "hdfs" {
                return Err(format!("No FileSystem for scheme \"{scheme}\""));
            }
            let Some(rest) = rest.strip_prefix("//") else {
                // hdfs:/p names a path on the default filesystem.
                let path = normalize("/", rest);
                return Ok(Self {
                    typed: arg.into(),
                    authority: default_authority.into(),
                    path,
                    style: Style::Absolute,
                });
            };
            let (authority, path) = match rest.find('/') {
                Some(idx) => (&rest[..idx], &rest[idx..]),
                None => (rest, "/"),
            };
            let resolved_authority = if authority.is_empty() {
                default_authority.to_string()
            } else {
                let (host, port) = match authority.rsplit_once(':') {
                    Some((host, port)) => {
                        port.parse::<u16>().map_err(|_| {
                            format!("Invalid port in URI {arg}: '{port}' is not a port number")
                        })?;
                        (host, Some(port))
                    }
                    None => (authority, None),
                };
                if host.is_empty() {
                    return Err(format!("Incomplete HDFS URI, no host: {arg}"));
                }
                format!("{host}:{}", port.unwrap_or("8020"))
            };
            return Ok(Self {
                typed: arg.into(),
                authority: resolved_authority,
                path: normalize("/", path),
                style: Style::Uri {
                    typed_authority: authority.to_string(),
                },
            });
        }
        if arg.starts_with('/') {
            return Ok(Self {
                typed: arg.into(),
                authority: default_authority.into(),
                path: normalize("/", arg),
                style: Style::Absolute,
            });
        }
        Ok(Self {
            typed: arg.into(),
            authority: default_authority.into(),
            path: normalize(cwd, arg),
            style: Style::Relative {
                cwd: cwd.to_string(),
            },
        })
    }

    /// The same kind of path, naming `path` instead (glob matches).
    pub fn with_path(&self, path: String) -> Self {
        let mut out = self.clone();
        out.typed = out.display_of(&path);
        out.path = path;
        out
    }

    /// The child `name` of this (directory) path.
    pub fn child(&self, name: &str) -> Self {
        let typed = if self.display() == "." {
            name.to_string()
        } else if self.display().ends_with('/') {
            format!("{}{name}", self.display())
        } else {
            format!("{}/{name}", self.display())
        };
        Self {
            typed,
            authority: self.authority.clone(),
            path: child(&self.path, name),
            style: self.style.clone(),
        }
    }

    /// The parent directory, in the same style.
    pub fn parent(&self) -> Self {
        let parent = rdfs_common::path::parent(&self.path).to_string();
        let mut out = self.clone();
        out.typed = out.display_of(&parent);
        out.path = parent;
        out
    }

    pub fn name(&self) -> &str {
        rdfs_common::path::file_name(&self.path)
    }

    /// How this path is printed in listings.
    pub fn display(&self) -> String {
        self.display_of(&self.path)
    }

    fn display_of(&self, path: &str) -> String {
        match &self.style {
            Style::Absolute => path.to_string(),
            Style::Uri { typed_authority } => format!("hdfs://{typed_authority}{path}"),
            Style::Relative { cwd } => {
                if path == cwd {
                    ".".to_string()
                } else if let Some(rest) = path
                    .strip_prefix(cwd.as_str())
                    .and_then(|r| r.strip_prefix('/'))
                {
                    rest.to_string()
                } else {
                    path.to_string()
                }
            }
        }
    }

    /// `hdfs://host:port/path`.
    pub fn qualified(&self) -> String {
        format!("hdfs://{}{}", self.authority, self.path)
    }

    /// True when the argument was written like a directory (`d/`, `.`, `..`).
    pub fn looks_like_dir(&self) -> bool {
        self.typed.ends_with('/')
            || self.typed == "."
            || self.typed == ".."
            || self.typed.ends_with("/.")
            || self.typed.ends_with("/..")
    }
}

/// `("hdfs", "//host/p")` for `hdfs://host/p`; `None` for plain paths.
fn split_scheme(arg: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = arg.split_once(':')?;
    let valid = !scheme.is_empty()
        && scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !scheme.contains('/');
    valid.then_some((scheme, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NN: &str = "127.0.0.1:8020";

    #[test]
    fn parses_every_form() {
        let p = PathArg::parse("/a//b/", NN, "/user/me").expect("absolute");
        assert_eq!((p.path.as_str(), p.display().as_str()), ("/a/b", "/a/b"));
        let p = PathArg::parse("hdfs://nn:9000/x/", NN, "/user/me").expect("uri");
        assert_eq!(
            (p.authority.as_str(), p.path.as_str(), p.display().as_str()),
            ("nn:9000", "/x", "hdfs://nn:9000/x")
        );
        let p = PathArg::parse("hdfs:///x", NN, "/user/me").expect("uri without authority");
        assert_eq!(
            (p.authority.as_str(), p.display().as_str()),
            (NN, "hdfs:///x")
        );
        let p = PathArg::parse("hdfs://nn/x", NN, "/user/me").expect("default port");
        assert_eq!(p.authority, "nn:8020");
        let p = PathArg::parse("./d/", NN, "/user/me").expect("relative");
        assert_eq!((p.path.as_str(), p.display().as_str()), ("/user/me/d", "d"));
        assert_eq!(p.child("f").display(), "d/f");
        let p = PathArg::parse(".", NN, "/user/me").expect("cwd");
        assert_eq!(
            (p.display().as_str(), p.child("f").display().as_str()),
            (".", "f")
        );
        assert!(
            PathArg::parse("s3://bucket/x", NN, "/")
                .expect_err("scheme")
                .contains("No FileSystem for scheme \"s3\"")
        );
        assert!(
            PathArg::parse("hdfs://nn:abc/x", NN, "/")
                .expect_err("port")
                .contains("port")
        );
        assert!(PathArg::parse("", NN, "/").is_err());
        assert_eq!(
            PathArg::parse("hdfs://nn:1/", NN, "/")
                .expect("root")
                .child("a")
                .display(),
            "hdfs://nn:1/a"
        );
    }
}
