//! The rules an rdfs path must follow (HDFS's `DFSUtil.isValidName`) and
//! small helpers on absolute paths.

/// HDFS's default `dfs.namenode.fs-limits.max-component-length`.
pub const MAX_COMPONENT_LENGTH: usize = 255;
/// HDFS's limits on a whole path (`NameNodeRpcServer`'s MAX_PATH_LENGTH and
/// MAX_PATH_DEPTH).
pub const MAX_PATH_LENGTH: usize = 8000;
pub const MAX_PATH_DEPTH: usize = 1000;

/// Why a path is not acceptable to the namenode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("Invalid path name Path is not absolute: {0}")]
    NotAbsolute(String),
    #[error("Invalid path name {path}: component '{component}' is not allowed")]
    BadComponent { path: String, component: String },
    #[error("Invalid path name {0}: empty path component")]
    EmptyComponent(String),
    #[error("Pathname too long.  Limit {MAX_PATH_LENGTH} characters, {MAX_PATH_DEPTH} levels.")]
    TooLong,
    #[error(
        "The maximum path component name limit of {component} in directory {parent} is exceeded: limit={MAX_COMPONENT_LENGTH} length={length}"
    )]
    ComponentTooLong {
        component: String,
        parent: String,
        length: usize,
    },
}

/// Splits an absolute path into its components, checking each. `/` has none;
/// one trailing slash is allowed (`/a/b/`).
pub fn components(path: &str) -> Result<Vec<&str>, PathError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathError::NotAbsolute(path.to_string()));
    };
    if path.len() > MAX_PATH_LENGTH || path.matches('/').count() > MAX_PATH_DEPTH {
        return Err(PathError::TooLong);
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for component in rest.split('/') {
        if component.is_empty() {
            return Err(PathError::EmptyComponent(path.to_string()));
        }
        if component == "."
            || component == ".."
            || component.contains(':')
            || component.contains('\0')
        {
            return Err(PathError::BadComponent {
                path: path.to_string(),
                component: component.to_string(),
            });
        }
        if component.len() > MAX_COMPONENT_LENGTH {
            return Err(PathError::ComponentTooLong {
                component: component.to_string(),
                parent: join_components(&out),
                length: component.len(),
            });
        }
        out.push(component);
    }
    Ok(out)
}

/// `/a/b` from `["a", "b"]`; `/` from none.
pub fn join_components(components: &[&str]) -> String {
    if components.is_empty() {
        return "/".to_string();
    }
    let mut out = String::new();
    for component in components {
        out.push('/');
        out.push_str(component);
    }
    out
}

/// Appends `name` to the absolute directory path `dir`.
pub fn child(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The parent of an absolute path (`/` for `/` itself).
pub fn parent(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(0) | None => "/",
        Some(idx) => &trimmed[..idx],
    }
}

/// The last component of a path (empty for `/`).
pub fn file_name(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    trimmed.rsplit('/').next().unwrap_or("")
}

/// Resolves `path` against the absolute directory `base` when it is relative,
/// then removes `.`, `..` and repeated slashes, as Hadoop's `Path` does.
pub fn normalize(base: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        child(base, path)
    };
    let mut out: Vec<&str> = Vec::new();
    for component in joined.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    join_components(&out)
}

/// True when `ancestor` is `path` or one of its ancestors (both normalized).
pub fn is_ancestor_or_self(ancestor: &str, path: &str) -> bool {
    ancestor == "/"
        || path == ancestor
        || path
            .strip_prefix(ancestor)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn valid_and_invalid_paths() {
        assert_eq!(components("/").unwrap(), Vec::<&str>::new());
        assert_eq!(components("/a/b").unwrap(), vec!["a", "b"]);
        assert_eq!(components("/a/b/").unwrap(), vec!["a", "b"]);
        assert!(matches!(components("a/b"), Err(PathError::NotAbsolute(_))));
        assert!(matches!(components(""), Err(PathError::NotAbsolute(_))));
        assert!(matches!(
            components("/a//b"),
            Err(PathError::EmptyComponent(_))
        ));
        assert!(matches!(
            components("/a/../b"),
            Err(PathError::BadComponent { .. })
        ));
        assert!(matches!(
            components("/a/./b"),
            Err(PathError::BadComponent { .. })
        ));
        assert!(matches!(
            components("/a:b"),
            Err(PathError::BadComponent { .. })
        ));
        assert_eq!(components(&"/a".repeat(1001)), Err(PathError::TooLong));
        let long = format!("/d/{}", "x".repeat(256));
        assert!(matches!(
            components(&long),
            Err(PathError::ComponentTooLong { length: 256, .. })
        ));
    }

    #[test]
    fn helpers() {
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("/"), "/");
        assert_eq!(file_name("/a/b"), "b");
        assert_eq!(file_name("/"), "");
        assert_eq!(child("/", "x"), "/x");
        assert_eq!(child("/a", "x"), "/a/x");
        assert_eq!(normalize("/user/me", "x/./y/../z"), "/user/me/x/z");
        assert_eq!(normalize("/user/me", "/a//b/"), "/a/b");
        assert_eq!(normalize("/user/me", ".."), "/user");
        assert_eq!(normalize("/", "../.."), "/");
        assert!(is_ancestor_or_self("/a", "/a/b"));
        assert!(is_ancestor_or_self("/a", "/a"));
        assert!(!is_ancestor_or_self("/a", "/ab"));
        assert!(is_ancestor_or_self("/", "/ab"));
    }

    proptest! {
        #[test]
        fn normalized_paths_are_valid(base in "(/[a-z]{1,3}){0,3}", path in "[a-z./]{0,20}") {
            let base = if base.is_empty() { "/".to_string() } else { base };
            let normalized = normalize(&base, &path);
            prop_assert!(components(&normalized).is_ok(), "{} is invalid", normalized);
        }
    }
}
