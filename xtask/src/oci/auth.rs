//! Registry credentials: anonymous, or a username and password (or token) from the
//! environment. The secret is never printed: `Debug` and [`Auth::describe`] leave it out.

use std::fmt;

use oci_client::secrets::RegistryAuth;

use super::error::OciError;

/// The environment variable holding the registry username.
pub const USERNAME_VAR: &str = "AKIDB_REGISTRY_USERNAME";
/// The environment variable holding the registry password or token.
pub const PASSWORD_VAR: &str = "AKIDB_REGISTRY_PASSWORD";

/// How to authenticate to the registry.
#[derive(Clone, Default)]
pub enum Auth {
    /// No credentials.
    #[default]
    Anonymous,
    /// HTTP basic credentials (also exchanged for a bearer token where the registry asks).
    Basic {
        /// The account.
        username: String,
        /// The password or token.
        password: String,
    },
}

impl Auth {
    /// Reads [`USERNAME_VAR`] and [`PASSWORD_VAR`]: both set is basic auth, neither is
    /// anonymous, one alone is an error.
    pub fn from_env() -> Result<Self, OciError> {
        let read = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self::from_parts(read(USERNAME_VAR), read(PASSWORD_VAR))
    }

    fn from_parts(username: Option<String>, password: Option<String>) -> Result<Self, OciError> {
        match (username, password) {
            (None, None) => Ok(Self::Anonymous),
            (Some(username), Some(password)) => Ok(Self::Basic { username, password }),
            (Some(_), None) => Err(OciError::Credentials(format!(
                "{USERNAME_VAR} is set but {PASSWORD_VAR} is not"
            ))),
            (None, Some(_)) => Err(OciError::Credentials(format!(
                "{PASSWORD_VAR} is set but {USERNAME_VAR} is not"
            ))),
        }
    }

    /// Which credentials these are, without the secret.
    pub fn describe(&self) -> String {
        match self {
            Self::Anonymous => "anonymous".into(),
            Self::Basic { username, .. } => format!("user {username}"),
        }
    }

    pub(super) fn registry_auth(&self) -> RegistryAuth {
        match self {
            Self::Anonymous => RegistryAuth::Anonymous,
            Self::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_or_neither_variable_and_the_secret_is_never_shown() {
        assert!(matches!(Auth::from_parts(None, None), Ok(Auth::Anonymous)));
        let auth = Auth::from_parts(Some("ci".into()), Some("s3cret-token".into())).unwrap();
        assert_eq!(format!("{auth:?}"), "user ci");
        assert!(!auth.describe().contains("s3cret"));
        let error = Auth::from_parts(Some("ci".into()), None)
            .unwrap_err()
            .to_string();
        assert!(error.contains(PASSWORD_VAR), "{error}");
        let error = Auth::from_parts(None, Some("x".into()))
            .unwrap_err()
            .to_string();
        assert!(error.contains(USERNAME_VAR), "{error}");
    }
}
