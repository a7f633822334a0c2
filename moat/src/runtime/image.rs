//! Which image a run uses, and the image moat generates for `dependencies:`.
//!
//! The base is `--image`, then moat.yaml `base_image`, then `MOAT_BASE_IMAGE`, then
//! [`DEFAULT_BASE_IMAGE`]; it is pulled when absent. When the run needs more than the base
//! (`dependencies:`, or iptables for the strict policy's firewall), moat generates a Dockerfile:
//! `FROM <base>`, one sorted `apt-get install` layer, then, for `npm:<package>` entries (an
//! agent's CLI), one sorted `npm install -g` layer (node and npm are added to the apt layer). The init step is mounted at
//! run time ([`super::init`]), not baked, so the same image serves every run and any image works.
//! The tag is `moat/run:` + the first 16 hex digits of the SHA-256 of the Dockerfile (which holds
//! every input: the base and the sorted package list), so equal inputs reuse the image and any
//! change builds a new one.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use super::Runtime;
use super::error::RuntimeError;
use super::progress::{Progress, ProgressEvent};

/// The image when nothing else is configured.
pub const DEFAULT_BASE_IMAGE: &str = "debian:bookworm-slim";

/// The variable naming the base image (below `--image` and moat.yaml `base_image`).
pub const BASE_IMAGE_ENV: &str = "MOAT_BASE_IMAGE";

/// The repository of generated images.
pub const GENERATED_REPOSITORY: &str = "moat/run";

/// The base image by precedence: `flag` (`--image`), `config` (moat.yaml `base_image`),
/// `MOAT_BASE_IMAGE`, then [`DEFAULT_BASE_IMAGE`]. Empty values count as unset.
pub fn base_image(flag: Option<&str>, config: Option<&str>) -> String {
    base_image_from(flag, config, std::env::var(BASE_IMAGE_ENV).ok().as_deref())
}

/// [`base_image`] with the variable's value passed in (for tests).
pub fn base_image_from(flag: Option<&str>, config: Option<&str>, env: Option<&str>) -> String {
    [flag, config, env]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or(DEFAULT_BASE_IMAGE)
        .to_owned()
}

/// One `dependencies:` entry: a Debian package, a runtime moat maps to Debian packages, or an
/// npm package (`npm:<package>`) installed globally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The entry as written.
    pub name: String,
    /// The Debian packages it installs.
    pub packages: Vec<String>,
    /// The npm package it installs globally (`npm:<package>`), after the Debian packages.
    pub npm: Option<String>,
}

/// The prefix of an npm package entry.
pub const NPM_PREFIX: &str = "npm:";

/// Runtimes known by a short name, and the Debian (bookworm) packages that provide them.
const RUNTIMES: &[(&str, &[&str])] = &[
    ("node", &["nodejs", "npm"]),
    ("nodejs", &["nodejs", "npm"]),
    ("python", &["python3", "python3-pip", "python3-venv"]),
    ("python3", &["python3", "python3-pip", "python3-venv"]),
    ("go", &["golang-go"]),
    ("golang", &["golang-go"]),
];

impl Dependency {
    /// Parse and validate an entry. Debian package names are lowercase letters, digits and
    /// `+ - .`, at least two characters, starting with a letter or digit (Debian policy 5.6.1);
    /// anything else (spaces, shell characters, versions) is refused here, before a build.
    pub fn parse(entry: &str) -> Result<Dependency, RuntimeError> {
        let invalid = |reason: &str| RuntimeError::InvalidDependency {
            name: entry.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(package) = entry.strip_prefix(NPM_PREFIX) {
            validate_npm_name(package).map_err(|reason| invalid(&reason))?;
            return Ok(Dependency {
                name: entry.to_owned(),
                packages: RUNTIMES[0].1.iter().map(|p| (*p).to_owned()).collect(),
                npm: Some(package.to_owned()),
            });
        }
        if let Some((name, _version)) = entry.split_once('@') {
            return Err(invalid(&format!(
                "versions are not supported yet: write `{name}` for the version Debian ships"
            )));
        }
        if let Some((_, packages)) = RUNTIMES.iter().find(|(name, _)| *name == entry) {
            return Ok(Dependency {
                name: entry.to_owned(),
                packages: packages.iter().map(|p| (*p).to_owned()).collect(),
                npm: None,
            });
        }
        let valid_chars = entry
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
        let starts_well = entry
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if entry.len() < 2 || !valid_chars || !starts_well {
            return Err(invalid(
                "not a Debian package name (lowercase letters, digits, + - ., at least two \
                 characters, starting with a letter or digit)",
            ));
        }
        Ok(Dependency {
            name: entry.to_owned(),
            packages: vec![entry.to_owned()],
            npm: None,
        })
    }
}

/// An npm package name as the registry accepts new ones: `name` or `@scope/name`, each part
/// lowercase letters, digits and `- . _ ~`, not starting with `.` or `_`, 214 characters at most.
/// Versions, tags, URLs, paths and anything a shell would read (spaces, `;`, `$`, quotes) are
/// refused: the name goes into a `RUN npm install -g` line.
fn validate_npm_name(package: &str) -> Result<(), String> {
    let part_ok = |part: &str| {
        !part.is_empty()
            && !part.starts_with(['.', '_'])
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._~".contains(&b))
    };
    let valid = match package.strip_prefix('@') {
        Some(scoped) => scoped
            .split_once('/')
            .is_some_and(|(scope, name)| part_ok(scope) && part_ok(name)),
        None => part_ok(package),
    };
    if package.len() > 214 || !valid {
        return Err(
            "not an npm package name (`name` or `@scope/name`: lowercase letters, digits, \
             - . _ ~; no version, URL or path)"
                .into(),
        );
    }
    Ok(())
}

/// What the run's image must contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRequest {
    /// The base image (see [`base_image`]).
    pub base: String,
    /// `dependencies:` entries, as written.
    pub dependencies: Vec<String>,
    /// The strict network policy is on: the init's firewall needs `iptables`.
    pub firewall: bool,
}

impl ImageRequest {
    /// Just the base image.
    pub fn new(base: impl Into<String>) -> Self {
        ImageRequest {
            base: base.into(),
            dependencies: Vec::new(),
            firewall: false,
        }
    }
}

/// An image to build: a Dockerfile and the files beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSpec {
    /// The tag to give the result.
    pub tag: String,
    /// The Dockerfile's text.
    pub dockerfile: String,
    /// Other files in the build context, by relative path.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Labels on the image.
    pub labels: BTreeMap<String, String>,
    /// The image in `FROM`, made present (pulled) before the build.
    pub base: Option<String>,
}

/// How to get the run's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImagePlan {
    /// Use the base as it is.
    Base(String),
    /// Build (or reuse) a generated image.
    Build(BuildSpec),
}

impl ImagePlan {
    /// Validate the request and decide. Fails on an invalid dependency or base name.
    pub fn new(request: &ImageRequest) -> Result<ImagePlan, RuntimeError> {
        let base = request.base.trim();
        if base.is_empty() || base.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(RuntimeError::ImageUnavailable {
                image: request.base.clone(),
                cause: "not a valid image reference".into(),
            });
        }
        let mut packages = BTreeSet::new();
        let mut npm = BTreeSet::new();
        for entry in &request.dependencies {
            let dependency = Dependency::parse(entry.trim())?;
            packages.extend(dependency.packages);
            npm.extend(dependency.npm);
        }
        if request.firewall {
            packages.insert("iptables".to_owned());
        }
        if packages.is_empty() {
            return Ok(ImagePlan::Base(base.to_owned()));
        }
        let dockerfile = dockerfile(base, &packages, &npm);
        Ok(ImagePlan::Build(BuildSpec {
            tag: generated_tag(&dockerfile),
            dockerfile,
            files: BTreeMap::new(),
            labels: BTreeMap::from([
                (super::MANAGED_LABEL.to_owned(), "true".to_owned()),
                ("moat.base".to_owned(), base.to_owned()),
            ]),
            base: Some(base.to_owned()),
        }))
    }

    /// The image reference the container will use.
    pub fn image(&self) -> &str {
        match self {
            ImagePlan::Base(image) => image,
            ImagePlan::Build(spec) => &spec.tag,
        }
    }

    /// Make the image present: reuse it, pull the base, build. Returns the reference to run.
    pub async fn ensure(
        &self,
        runtime: &dyn Runtime,
        progress: &dyn Progress,
    ) -> Result<String, RuntimeError> {
        match self {
            ImagePlan::Base(image) => {
                ensure_present(runtime, image, progress).await?;
                Ok(image.clone())
            }
            ImagePlan::Build(spec) => {
                if runtime.image_exists(&spec.tag).await? {
                    progress.event(ProgressEvent::Done(format!(
                        "Using image {} (built before)",
                        spec.tag
                    )));
                    return Ok(spec.tag.clone());
                }
                if let Some(base) = &spec.base {
                    ensure_present(runtime, base, progress).await?;
                }
                runtime.build_image(spec, progress).await?;
                Ok(spec.tag.clone())
            }
        }
    }
}

/// Pull `image` unless it is present.
async fn ensure_present(
    runtime: &dyn Runtime,
    image: &str,
    progress: &dyn Progress,
) -> Result<(), RuntimeError> {
    if runtime.image_exists(image).await? {
        return Ok(());
    }
    runtime.pull_image(image, progress).await
}

/// The generated Dockerfile: the base, then one sorted apt layer that leaves no package lists,
/// then (for `npm:` entries) one sorted `npm install -g` layer that leaves no npm cache.
fn dockerfile(base: &str, packages: &BTreeSet<String>, npm: &BTreeSet<String>) -> String {
    let list = packages.iter().cloned().collect::<Vec<_>>().join(" ");
    let mut text = format!(
        "# Generated by moat from moat.yaml `dependencies:`; do not edit.\n\
         FROM {base}\n\
         ENV DEBIAN_FRONTEND=noninteractive\n\
         RUN apt-get update \\\n \
         && apt-get install -y --no-install-recommends {list} \\\n \
         && rm -rf /var/lib/apt/lists/*\n"
    );
    if !npm.is_empty() {
        let list = npm.iter().cloned().collect::<Vec<_>>().join(" ");
        text.push_str(&format!(
            "RUN npm install -g --no-audit --no-fund {list} \\\n \
             && npm cache clean --force\n"
        ));
    }
    text
}

/// `moat/run:<16 hex of sha256(dockerfile)>`.
fn generated_tag(dockerfile: &str) -> String {
    let digest = Sha256::digest(dockerfile.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{GENERATED_REPOSITORY}:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(base: &str, deps: &[&str], firewall: bool) -> ImageRequest {
        ImageRequest {
            base: base.into(),
            dependencies: deps.iter().map(|d| (*d).to_owned()).collect(),
            firewall,
        }
    }

    fn build(plan: ImagePlan) -> BuildSpec {
        match plan {
            ImagePlan::Build(spec) => spec,
            ImagePlan::Base(image) => panic!("expected a build, got base {image}"),
        }
    }

    #[test]
    fn base_image_precedence_is_flag_config_env_default() {
        assert_eq!(base_image_from(Some("a"), Some("b"), Some("c")), "a");
        assert_eq!(base_image_from(None, Some("b"), Some("c")), "b");
        assert_eq!(base_image_from(None, None, Some("c")), "c");
        assert_eq!(base_image_from(None, None, None), "debian:bookworm-slim");
        assert_eq!(base_image_from(Some(""), Some(" "), Some("c")), "c");
    }

    #[test]
    fn no_dependencies_and_no_firewall_runs_the_base_as_is() {
        let plan = ImagePlan::new(&request("moat-base:bookworm", &[], false)).unwrap();
        assert_eq!(plan, ImagePlan::Base("moat-base:bookworm".into()));
        assert_eq!(plan.image(), "moat-base:bookworm");
    }

    #[test]
    fn the_dockerfile_is_one_sorted_apt_layer_on_the_base() {
        let spec = build(
            ImagePlan::new(&request(
                "debian:bookworm-slim",
                &["jq", "git", "python"],
                false,
            ))
            .unwrap(),
        );
        assert_eq!(
            spec.dockerfile,
            "# Generated by moat from moat.yaml `dependencies:`; do not edit.\n\
             FROM debian:bookworm-slim\n\
             ENV DEBIAN_FRONTEND=noninteractive\n\
             RUN apt-get update \\\n \
             && apt-get install -y --no-install-recommends git jq python3 python3-pip python3-venv \\\n \
             && rm -rf /var/lib/apt/lists/*\n"
        );
        assert_eq!(spec.base.as_deref(), Some("debian:bookworm-slim"));
        assert!(spec.files.is_empty());
        assert_eq!(spec.labels["moat.managed"], "true");
    }

    #[test]
    fn the_firewall_adds_iptables() {
        let spec = build(ImagePlan::new(&request("img", &[], true)).unwrap());
        assert!(
            spec.dockerfile
                .contains("--no-install-recommends iptables \\"),
            "{}",
            spec.dockerfile
        );
        let with_jq = build(ImagePlan::new(&request("img", &["jq"], true)).unwrap());
        assert!(
            with_jq.dockerfile.contains("iptables jq"),
            "{}",
            with_jq.dockerfile
        );
    }

    #[test]
    fn the_tag_is_stable_and_changes_with_every_input() {
        let tag = |base: &str, deps: &[&str], fw: bool| {
            build(ImagePlan::new(&request(base, deps, fw)).unwrap()).tag
        };
        let a = tag("debian:bookworm-slim", &["jq", "git"], false);
        assert!(a.starts_with("moat/run:"), "{a}");
        let hex = a.strip_prefix("moat/run:").unwrap();
        assert_eq!(hex.len(), 16);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        // Order and duplicates do not matter; an alias that maps to the same packages does not.
        assert_eq!(a, tag("debian:bookworm-slim", &["git", "jq", "jq"], false));
        assert_eq!(tag("img", &["node"], false), tag("img", &["nodejs"], false));
        // Pinned value: the tag must not change between moat versions without reason (a change
        // rebuilds every user's image).
        assert_eq!(a, "moat/run:47c9637dc87d9370");
        assert_ne!(a, tag("debian:bookworm", &["jq", "git"], false));
        assert_ne!(a, tag("debian:bookworm-slim", &["jq"], false));
        assert_ne!(a, tag("debian:bookworm-slim", &["jq", "git"], true));
    }

    #[test]
    fn dependency_names_are_validated() {
        for good in ["jq", "g++", "libssl-dev", "python3.11", "0ad"] {
            let dep = Dependency::parse(good).unwrap();
            assert_eq!(dep.packages, [good]);
        }
        assert_eq!(
            Dependency::parse("node").unwrap().packages,
            ["nodejs", "npm"]
        );
        assert_eq!(Dependency::parse("go").unwrap().packages, ["golang-go"]);
        for bad in [
            "",
            "a",
            "JQ",
            "jq; rm -rf /",
            "jq curl",
            "-jq",
            "$(id)",
            "jq\n",
        ] {
            let err = Dependency::parse(bad).unwrap_err();
            assert!(
                matches!(err, RuntimeError::InvalidDependency { .. }),
                "{bad:?}: {err}"
            );
            assert!(err.hint().unwrap().contains("Debian package names"));
        }
        let err = Dependency::parse("node@20").unwrap_err().to_string();
        assert!(
            err.contains("versions are not supported") && err.contains("`node`"),
            "{err}"
        );
        // Through a plan, the entry is named.
        let err = ImagePlan::new(&request("img", &["jq", "Bad"], false)).unwrap_err();
        assert!(err.to_string().contains("\"Bad\""), "{err}");
    }

    #[test]
    fn npm_packages_get_node_and_one_sorted_global_install_layer() {
        let spec = build(
            ImagePlan::new(&request(
                "debian:bookworm-slim",
                &["git", "npm:@scope/agent-cli", "npm:typescript", "node"],
                false,
            ))
            .unwrap(),
        );
        assert_eq!(
            spec.dockerfile,
            "# Generated by moat from moat.yaml `dependencies:`; do not edit.\n\
             FROM debian:bookworm-slim\n\
             ENV DEBIAN_FRONTEND=noninteractive\n\
             RUN apt-get update \\\n \
             && apt-get install -y --no-install-recommends git nodejs npm \\\n \
             && rm -rf /var/lib/apt/lists/*\n\
             RUN npm install -g --no-audit --no-fund @scope/agent-cli typescript \\\n \
             && npm cache clean --force\n"
        );
        // node and npm come with an npm package even when not asked for.
        let alone = build(ImagePlan::new(&request("img", &["npm:left-pad"], false)).unwrap());
        assert!(
            alone
                .dockerfile
                .contains("--no-install-recommends nodejs npm \\"),
            "{}",
            alone.dockerfile
        );
        assert!(
            alone
                .dockerfile
                .contains("npm install -g --no-audit --no-fund left-pad ")
        );
        let dep = Dependency::parse("npm:@scope/pkg.js").unwrap();
        assert_eq!(dep.npm.as_deref(), Some("@scope/pkg.js"));
        assert_eq!(dep.packages, ["nodejs", "npm"]);
    }

    #[test]
    fn npm_package_names_with_shell_characters_versions_or_paths_are_refused() {
        for bad in [
            "npm:",
            "npm:Left-Pad",
            "npm:left pad",
            "npm:x; rm -rf /",
            "npm:$(id)",
            "npm:`id`",
            "npm:a&&b",
            "npm:left-pad@1.0.0",
            "npm:@scope",
            "npm:@/x",
            "npm:@scope/",
            "npm:../evil",
            "npm:.hidden",
            "npm:_under",
            "npm:git+https://x/y",
            "npm:x\nRUN evil",
            "npm:x'y",
        ] {
            let err = Dependency::parse(bad).unwrap_err();
            assert!(
                matches!(err, RuntimeError::InvalidDependency { .. }),
                "{bad:?}: {err}"
            );
            assert!(
                err.to_string().contains("npm package name"),
                "{bad:?}: {err}"
            );
        }
        assert!(Dependency::parse(&format!("npm:{}", "a".repeat(215))).is_err());
    }

    #[test]
    fn a_base_with_whitespace_is_refused() {
        let err = ImagePlan::new(&request("debian\nRUN evil", &["jq"], false)).unwrap_err();
        assert!(
            matches!(err, RuntimeError::ImageUnavailable { .. }),
            "{err}"
        );
        assert!(ImagePlan::new(&request("", &[], false)).is_err());
    }
}
