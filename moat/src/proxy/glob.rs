//! Path globs, as network rules and response replacements write them: `*` matches within one
//! segment, `**` any number of segments. A trailing `/**` also matches the path without it:
//! `/p/**` matches `/p`, `/p/` and everything below `/p` (not `/px`), so `deny * /admin/**` covers
//! `/admin` itself; `/**` matches everything. A glob starts with `/`; it is matched against a path
//! without its query.
//!
//! Network rules match the [`normalize`]d path, so that a spelling the upstream reads as the same
//! resource (`//admin`, `/./admin`, `/x/../admin`, `/%61dmin`, `/admin;a`) cannot walk past a
//! rule.

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

/// Whether `glob` matches `path`, segment by segment (`**`: any number of segments, none
/// included). Dynamic programming over (glob segment, path segment): linear in each, whatever
/// the number of `**` (a backtracking matcher is exponential in them, and both the glob (a
/// workspace's `moat.yaml`, a plugin's rules) and the path (the container) come from outside).
fn match_segments(glob: &[String], path: &[&str]) -> bool {
    // `next[j]`: the glob segments after the current one match `path[j..]`.
    let mut next = vec![false; path.len() + 1];
    next[path.len()] = true;
    for pattern in glob.iter().rev() {
        let mut current = vec![false; path.len() + 1];
        if pattern == "**" {
            let mut any = false;
            for j in (0..=path.len()).rev() {
                any |= next[j];
                current[j] = any;
            }
        } else {
            for (j, segment) in path.iter().enumerate() {
                current[j] = next[j + 1] && segment_matches(pattern, segment);
            }
        }
        next = current;
    }
    next[0]
}

/// The path a rule is matched against: the path without its query or fragment, with
/// percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) decoded, `;params` cut off each
/// segment (servers such as Tomcat and Spring drop them), empty segments (`//`) dropped, and `.`
/// and `..` resolved (`..` above the root stays at the root). Other escapes (`%2F` included) stay
/// as written, their hex in upper case. A trailing slash is kept: `/p/` stays `/p/`.
pub(crate) fn normalize(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    let mut out: Vec<String> = Vec::new();
    for raw in path.split('/') {
        let segment = decode_unreserved(raw);
        let segment = segment.split(';').next().unwrap_or("");
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            other => out.push(other.to_owned()),
        }
    }
    let mut normal = String::with_capacity(path.len() + 1);
    for segment in &out {
        normal.push('/');
        normal.push_str(segment);
    }
    if trailing || out.is_empty() {
        normal.push('/');
    }
    normal
}

/// Decodes `%XX` escapes of unreserved characters; other escapes are kept, in upper case.
fn decode_unreserved(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = String::with_capacity(segment.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                let byte = (h * 16 + l) as u8;
                if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                    out.push(byte as char);
                } else {
                    out.push('%');
                    out.push(bytes[i + 1].to_ascii_uppercase() as char);
                    out.push(bytes[i + 2].to_ascii_uppercase() as char);
                }
                i += 3;
                continue;
            }
        }
        // Copy one whole character (the path may hold raw UTF-8).
        let width = segment[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&segment[i..i + width]);
        i += width;
    }
    out
}

/// `*` within a segment matches any run of characters (not `/`). Greedy, leftmost: each part
/// between stars is taken at its first occurrence, which is enough when `*` is the only
/// wildcard, and linear in the segment.
fn segment_matches(pattern: &str, segment: &str) -> bool {
    let mut parts = pattern.split('*');
    let head = parts.next().unwrap_or_default();
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return pattern == segment;
    };
    let Some(mut rest) = segment.strip_prefix(head) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
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
        assert!(g("/p/**", "/p"));
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
    fn paths_are_normalized_before_rules_see_them() {
        for path in [
            "/admin/x",
            "//admin/x",
            "/./admin/x",
            "/x/../admin/x",
            "/%61dmin/x",
            "/admin;a/x",
            "/admin;a=b/./x;y",
            "/%2e%2e/admin/x",
            "/../admin/x",
            "/admin/x?q=/y",
        ] {
            assert_eq!(normalize(path), "/admin/x", "{path}");
        }
        assert_eq!(normalize("/"), "/");
        assert_eq!(normalize(""), "/");
        assert_eq!(normalize("/.."), "/");
        assert_eq!(normalize("/p/"), "/p/");
        assert_eq!(normalize("/p/x/.."), "/p/");
        assert_eq!(normalize("/a%2fb"), "/a%2Fb");
        assert_eq!(normalize("/a%2"), "/a%2");
        assert_eq!(normalize("/é%"), "/é%");
    }

    #[test]
    fn a_glob_starts_with_a_slash() {
        assert!(PathGlob::parse("x/y").is_err());
    }

    /// The definition, as a backtracking matcher: exponential in the stars, fine for the small
    /// inputs of the property below.
    fn reference(glob: &[&str], path: &[&str]) -> bool {
        fn segment(pattern: &str, text: &str) -> bool {
            let Some((head, tail)) = pattern.split_once('*') else {
                return pattern == text;
            };
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|i| rest.is_char_boundary(*i))
                .any(|i| segment(tail, &rest[i..]))
        }
        match glob.split_first() {
            None => path.is_empty(),
            Some((&"**", rest)) => (0..=path.len()).any(|skip| reference(rest, &path[skip..])),
            Some((first, rest)) => path
                .split_first()
                .is_some_and(|(s, path_rest)| segment(first, s) && reference(rest, path_rest)),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(crate::proxy::test_cases(4096)))]

        /// The linear matcher agrees with the definition on every glob and path.
        #[test]
        fn the_matcher_is_the_definition(
            glob in proptest::collection::vec("\\*\\*|[ab*]{0,4}", 0..6),
            path in proptest::collection::vec("[ab]{0,4}", 0..7),
        ) {
            let glob_text = format!("/{}", glob.join("/"));
            let path_text = format!("/{}", path.join("/"));
            let glob_refs: Vec<&str> = glob_text[1..].split('/').collect();
            let path_refs: Vec<&str> = path_text[1..].split('/').collect();
            proptest::prop_assert_eq!(
                PathGlob::parse(&glob_text).unwrap().matches(&path_text),
                reference(&glob_refs, &path_refs),
                "{} against {}", glob_text, path_text
            );
        }

        /// `/p/**` matches `/p`, `/p/` and everything below, never a sibling that merely starts
        /// with `p`.
        #[test]
        fn a_trailing_double_star_covers_the_prefix_and_below(
            prefix in "[a-z]{1,8}",
            below in proptest::collection::vec("[a-z0-9.%;]{0,6}", 0..5),
            sibling in "[a-z0-9]{1,4}",
        ) {
            let glob = PathGlob::parse(&format!("/{prefix}/**")).unwrap();
            let (bare, slash) = (format!("/{prefix}"), format!("/{prefix}/"));
            let under = format!("/{prefix}/{}", below.join("/"));
            let (glued, other) = (format!("/{prefix}{sibling}"), format!("/{sibling}{prefix}/x"));
            proptest::prop_assert!(glob.matches(&bare));
            proptest::prop_assert!(glob.matches(&slash));
            proptest::prop_assert!(glob.matches(&under));
            proptest::prop_assert!(!glob.matches(&glued));
            proptest::prop_assert!(!glob.matches(&other));
        }
    }

    #[test]
    fn many_stars_do_not_take_exponential_time() {
        // Backtracking took about 2^n steps here; a rule from a workspace's moat.yaml must not
        // hang the proxy on a long path.
        let glob = PathGlob::parse(&format!("{}/z", "/**".repeat(64))).unwrap();
        let path = "/a".repeat(4096);
        assert!(!glob.matches(&path));
        let stars = PathGlob::parse(&format!("/{}z", "*a".repeat(64))).unwrap();
        assert!(!stars.matches(&format!("/{}", "a".repeat(8192))));
    }
}
