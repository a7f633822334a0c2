//! Run names: `--name`, else `moat.yaml`'s `name:`, else a random `adjective-animal`.

use ring::rand::{SecureRandom as _, SystemRandom};

/// 50 adjectives for random names.
const ADJECTIVES: [&str; 50] = [
    "amber",
    "brave",
    "bright",
    "brisk",
    "calm",
    "clever",
    "cosmic",
    "crisp",
    "curious",
    "daring",
    "dusty",
    "eager",
    "fancy",
    "fierce",
    "gentle",
    "giddy",
    "golden",
    "happy",
    "hidden",
    "humble",
    "icy",
    "jolly",
    "keen",
    "lively",
    "lucky",
    "mellow",
    "misty",
    "nimble",
    "noble",
    "odd",
    "patient",
    "plucky",
    "proud",
    "quick",
    "quiet",
    "rapid",
    "rusty",
    "shiny",
    "silent",
    "sleepy",
    "snowy",
    "steady",
    "sunny",
    "swift",
    "tidy",
    "vivid",
    "wandering",
    "witty",
    "young",
    "zesty",
];

/// 60 animals for random names.
const ANIMALS: [&str; 60] = [
    "badger", "bat", "bear", "beaver", "bison", "camel", "cat", "cheetah", "cobra", "crab",
    "crane", "crow", "deer", "dingo", "dolphin", "donkey", "eagle", "eel", "falcon", "ferret",
    "finch", "fox", "frog", "gecko", "goat", "goose", "hare", "hawk", "heron", "ibis", "jackal",
    "koala", "lemur", "lion", "llama", "lynx", "marmot", "mole", "moose", "newt", "otter", "owl",
    "panda", "parrot", "pelican", "puffin", "quail", "rabbit", "raven", "seal", "shark", "sloth",
    "snail", "swan", "tiger", "toad", "turtle", "walrus", "wolf", "yak",
];

/// The longest name accepted.
pub const MAX_NAME_LEN: usize = 63;

/// Why a run name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid run name {name:?}: {reason} (a name is 1-63 letters, digits, '.', '_' or '-', \
     starting with a letter or digit, and not starting with \"run_\")"
)]
pub struct NameError {
    /// The name given.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Checks a name given by the user (`--name`, `moat.yaml`). Names are matched exactly when a run
/// is resolved, after ids and id prefixes, so a name may not look like an id (`run_…`).
pub fn validate_name(name: &str) -> Result<(), NameError> {
    let refuse = |reason| {
        Err(NameError {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return refuse("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return refuse("it is too long");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return refuse("it must start with a letter or digit");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return refuse("it has a character other than letters, digits, '.', '_' and '-'");
    }
    if name.starts_with("run_") {
        return refuse("it looks like a run id");
    }
    Ok(())
}

/// A random `adjective-animal` (3000 combinations), from the system's CSPRNG.
pub fn random_name() -> String {
    let [a, b] = random_u16s();
    format!(
        "{}-{}",
        ADJECTIVES[usize::from(a) % ADJECTIVES.len()],
        ANIMALS[usize::from(b) % ANIMALS.len()]
    )
}

/// Four random hex digits, appended to a random name that is already taken.
pub(crate) fn random_suffix() -> String {
    let [a, _] = random_u16s();
    format!("{a:04x}")
}

fn random_u16s() -> [u16; 2] {
    let mut bytes = [0u8; 4];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random number generator failed");
    [
        u16::from_be_bytes([bytes[0], bytes[1]]),
        u16::from_be_bytes([bytes[2], bytes[3]]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_lists_are_valid_names_without_duplicates() {
        let mut all: Vec<&str> = ADJECTIVES.iter().chain(ANIMALS.iter()).copied().collect();
        for word in &all {
            assert!(word.chars().all(|c| c.is_ascii_lowercase()), "{word}");
        }
        all.sort_unstable();
        let len = all.len();
        all.dedup();
        assert_eq!(all.len(), len, "a word appears twice");
    }

    #[test]
    fn random_names_are_adjective_animal_and_vary() {
        let names: std::collections::BTreeSet<String> = (0..50).map(|_| random_name()).collect();
        assert!(names.len() > 10, "{names:?}");
        for name in &names {
            let (a, b) = name.split_once('-').unwrap();
            assert!(ADJECTIVES.contains(&a) && ANIMALS.contains(&b), "{name}");
            validate_name(name).unwrap();
        }
        assert_eq!(random_suffix().len(), 4);
    }

    #[test]
    fn name_validation() {
        for ok in ["a", "my-run", "A.b_c-1", "9lives", &"x".repeat(63)] {
            validate_name(ok).unwrap();
        }
        for (bad, reason) in [
            ("", "it is empty"),
            (&"x".repeat(64), "it is too long"),
            ("-a", "it must start with a letter or digit"),
            (
                "a b",
                "it has a character other than letters, digits, '.', '_' and '-'",
            ),
            (
                "a/b",
                "it has a character other than letters, digits, '.', '_' and '-'",
            ),
            ("run_abc", "it looks like a run id"),
        ] {
            assert_eq!(validate_name(bad).unwrap_err().reason, reason, "{bad:?}");
        }
    }
}
