//! The commented starter file `moat provider new <name>` writes.

/// A provider file for `name` that loads as it is (header mode, `Authorization: Bearer`, on
/// `api.<name>.example`), every field explained, so editing it is filling in the blanks.
pub fn starter(name: &str) -> String {
    let env = name.to_ascii_uppercase().replace('-', "_");
    format!(
        r#"# A moat provider, declared in YAML. Check it with: moat provider check <this file>
# Then: moat grant {name}, and moat run --grant {name} -- <command>.
# Every field: https://github.com/moat-dev/moat#declared-providers-a-yaml-file-instead-of-code
# Editors can validate this file against schema/provider-file.schema.json:
# yaml-language-server: $schema=https://raw.githubusercontent.com/moat-dev/moat/main/schema/provider-file.schema.json

# What 'moat grant <name>' and '--grant <name>' take. Lowercase letters, digits and '-'.
name: {name}
# One line for 'moat grant providers'.
description: {name} API token
# Other names for it (optional).
aliases: []

# The hosts that get the credential: exact names, or *.suffix for every subdomain (not the apex).
# Under a strict network policy, also the hosts this grant lets the container reach.
hosts:
  - api.{name}.example

# Header mode: the proxy sets this header to <prefix><token> on requests to the hosts.
# Remove the whole 'inject' block for substitution mode (tokens that travel in the URL, like
# /bot<token>/...): the container gets a placeholder in container_env, the proxy swaps it for
# the token in URLs, the Authorization header and small bodies, and swaps the token back out of
# responses.
inject:
  header: Authorization
  prefix: "Bearer "

# At grant time, the first of these variables that is set is the token; else moat asks for it
# (hidden input), showing 'prompt'.
source_env:
  - {env}_TOKEN
prompt: Create a token at https://{name}.example/settings/tokens and paste it here.

# What the container sees: this variable holds a placeholder, never the token.
container_env: {env}_TOKEN

# How 'moat grant' checks the token before storing it (remove to store any non-empty token).
# url may hold ${{token}}; header/prefix default to inject's; status defaults to any 2xx.
# MOAT_{env}_API_URL=https://localhost:8443 sends the check elsewhere (tests, self-hosted).
validate:
  url: https://api.{name}.example/v1/me
  method: GET
"#
    )
}
