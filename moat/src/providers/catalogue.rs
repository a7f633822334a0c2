//! The bundled catalogue: declared providers (YAML, in `moat/catalogue/`) compiled into moat.
//! `main` registers them last, after plugins, so a user's file or plugin of the same name
//! replaces one. Adding a service is adding a file here and a line below.

/// `(file name, YAML text)` of every bundled provider file.
pub const FILES: &[(&str, &str)] = &[
    (
        "brave-search.yaml",
        include_str!("../../catalogue/brave-search.yaml"),
    ),
    ("datadog.yaml", include_str!("../../catalogue/datadog.yaml")),
    (
        "elevenlabs.yaml",
        include_str!("../../catalogue/elevenlabs.yaml"),
    ),
    ("gitlab.yaml", include_str!("../../catalogue/gitlab.yaml")),
    ("linear.yaml", include_str!("../../catalogue/linear.yaml")),
    ("sentry.yaml", include_str!("../../catalogue/sentry.yaml")),
    (
        "telegram.yaml",
        include_str!("../../catalogue/telegram.yaml"),
    ),
    ("vercel.yaml", include_str!("../../catalogue/vercel.yaml")),
];
