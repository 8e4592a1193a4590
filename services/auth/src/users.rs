//! The users file: one `username:PHC-hash` per line (argon2id, as written by
//! `auth-service hash-password`); `#` comments and blank lines ignored. No plaintext passwords.

use std::collections::HashMap;
use std::path::Path;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Why the users file was refused.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// The file could not be read.
    #[error("reading users file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not `username:hash` with a valid PHC hash.
    #[error("users file line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// The known users and their password hashes.
#[derive(Debug, Clone)]
pub struct Users {
    hashes: HashMap<String, String>,
    /// Verified when the user is unknown, so that unknown users take as long as wrong passwords.
    dummy: String,
}

impl Users {
    /// Parse the file's text.
    pub fn parse(text: &str) -> Result<Self, UsersError> {
        let mut hashes = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: &str| UsersError::Line {
                line: i + 1,
                reason: reason.to_owned(),
            };
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| bad("expected username:hash"))?;
            let user = user.trim();
            if user.is_empty() {
                return Err(bad("empty username"));
            }
            PasswordHash::new(hash.trim()).map_err(|e| {
                bad(&format!(
                    "not a PHC password hash ({e}); write it with `auth-service hash-password`"
                ))
            })?;
            if hashes
                .insert(user.to_owned(), hash.trim().to_owned())
                .is_some()
            {
                return Err(bad(&format!("user {user} listed twice")));
            }
        }
        Ok(Self {
            hashes,
            dummy: hash_password("not a real password").unwrap_or_default(),
        })
    }

    /// Read and parse a users file.
    pub fn load(path: &Path) -> Result<Self, UsersError> {
        let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Whether `password` is `user`'s (argon2 verification is constant-time; an unknown user
    /// is checked against a dummy hash so that it takes as long).
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let (hash, known) = match self.hashes.get(user) {
            Some(h) => (h.as_str(), true),
            None => (self.dummy.as_str(), false),
        };
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && known
    }
}

/// Hash a password for the users file (argon2id, random salt, PHC string).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_right_password_of_a_known_user() {
        let h = hash_password("s3cret").unwrap();
        let users = Users::parse(&format!("# demo\n\nalice:{h}\n")).unwrap();
        assert_eq!(users.len(), 1);
        assert!(users.verify("alice", "s3cret"));
        assert!(!users.verify("alice", "wrong"));
        assert!(!users.verify("bob", "s3cret"));
    }

    #[test]
    fn refuses_plaintext_and_duplicates_naming_the_line() {
        let e = Users::parse("alice:plaintext").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("PHC"), "{e}");
        let h = hash_password("x").unwrap();
        let e = Users::parse(&format!("a:{h}\na:{h}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("twice"), "{e}");
        assert!(Users::parse("nocolon").is_err());
    }
}
