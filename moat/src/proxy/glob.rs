//! Path globs, as network rules and response replacements write them: `*` matches within one
//! segment, `**` any number of segments (a trailing `/**` needs at least the slash: `/p/**` does
//! not match `/p`, `/**` matches everything). A glob starts with `/`; it is matched against a path
//! without its query.

/// A parsed glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathGlob {
    /// The glob without its leading `/`, split on `/`.
    segments: Vec<String>,
}

impl PathGlob {
    /// Parses `glob`, which must start with `/`.
    pub fn parse(glob: &str) -> Result<PathGlob, &'static str> {
        if !glob.starts_with('/') {
            return Err("the path glob must start with /");
        }
        Ok(PathGlob {
            segments: glob.split('/').skip(1).map(str::to_owned).collect(),
        })
    }

    /// Whether `path` (starting with `/`, no query) matches.
    pub fn matches(&self, path: &str) -> bool {
        let path: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
        match_segments(&self.segments, &path)
    }
}

fn match_segments(glob: &[String], path: &[&str]) -> bool {
    match glob.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            if rest.is_empty() {
                // A trailing `**` needs at least one (possibly empty) segment: `/p/**` matches
                // `/p/` and below, not `/p`.
                return !path.is_empty();
            }
            (0..=path.len()).any(|skip| match_segments(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((segment, path_rest)) => {
                segment_matches(first, segment) && match_segments(rest, path_rest)
            }
            None => false,
        },
    }
}

/// `*` within a segment matches any run of characters (not `/`).
fn segment_matches(pattern: &str, segment: &str) -> bool {
    let Some((head, tail)) = pattern.split_once('*') else {
        return pattern == segment;
    };
    if !segment.starts_with(head) {
        return false;
    }
    let rest = &segment[head.len()..];
    (0..=rest.len())
        .filter(|i| rest.is_char_boundary(*i))
        .any(|i| segment_matches(tail, &rest[i..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let g = |glob: &str, path: &str| PathGlob::parse(glob).unwrap().matches(path);
        assert!(g("/**", "/"));
        assert!(g("/**", "/a/b/c"));
        assert!(g("/p/**", "/p/"));
        assert!(g("/p/**", "/p/x/y"));
        assert!(!g("/p/**", "/p"));
        assert!(!g("/p/**", "/px"));
        assert!(g("/repos/*/issues", "/repos/octo/issues"));
        assert!(!g("/repos/*/issues", "/repos/a/b/issues"));
        assert!(g("/a/**/z", "/a/z"));
        assert!(g("/a/**/z", "/a/b/c/z"));
        assert!(g("/*.git/**", "/repo.git/info/refs"));
        assert!(!g("/*.git/**", "/repo/info/refs"));
        assert!(g("/exact", "/exact"));
        assert!(!g("/exact", "/exact/"));
    }

    #[test]
    fn a_glob_starts_with_a_slash() {
        assert!(PathGlob::parse("x/y").is_err());
    }
}
