//! A run: a command in a container, its credentials on the wire and never inside.
//!
//! | module | job |
//! | --- | --- |
//! | [`container_env`] | the container's environment: proxy, CA, placeholders, the user's variables |
//! | [`refresh`] | renewing credentials before they expire, swapping the run's rules in place |

pub mod container_env;
pub mod refresh;
