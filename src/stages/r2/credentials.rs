//! Where the sink's access key comes from: the first complete R2 or AWS variable pair, read
//! from the process environment or from the variables a test gives, with the secret wrapped so
//! that it cannot reach a log or a message.

use std::fmt;

use super::R2;

/// Credential variables, in order of preference: a pair is used only when both halves are set,
/// so an R2 key id is never signed with an AWS secret.
pub(super) const CREDENTIAL_PAIRS: [(&str, &str); 2] =
    [("R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY"), ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")];

/// A secret access key: its `Debug` prints `***` and it has no `Display`, so it cannot reach a
/// log or a message by accident.
pub(super) struct Secret(pub(super) String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Secret {
    /// `text` with the secret replaced by `***`, for messages built from server answers.
    pub(super) fn redact(&self, text: &str) -> String {
        text.replace(&self.0, "***")
    }
}

pub(super) struct Credentials {
    pub(super) key_id: String,
    pub(super) secret: Secret,
    pub(super) source: (&'static str, &'static str),
}

impl R2 {
    /// A variable's value; empty values count as unset.
    fn var(&self, name: &str) -> Option<String> {
        let value = match &self.env {
            Some(vars) => vars.get(name).cloned(),
            None => std::env::var(name).ok(),
        };
        value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    /// The first complete credential pair and the names it came from.
    pub(super) fn credentials(&self) -> Result<Option<Credentials>, String> {
        for (id_var, secret_var) in CREDENTIAL_PAIRS {
            match (self.var(id_var), self.var(secret_var)) {
                (Some(key_id), Some(secret)) => {
                    return Ok(Some(Credentials {
                        key_id,
                        secret: Secret(secret),
                        source: (id_var, secret_var),
                    }));
                }
                (Some(_), None) => return Err(format!("{id_var} is set but {secret_var} is not")),
                (None, Some(_)) => return Err(format!("{secret_var} is set but {id_var} is not")),
                (None, None) => {}
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r2_pair_wins_and_pairs_are_not_mixed() {
        let both = R2::new().with_env([
            ("R2_ACCESS_KEY_ID", "r2id"),
            ("R2_SECRET_ACCESS_KEY", "r2secret"),
            ("AWS_ACCESS_KEY_ID", "awsid"),
            ("AWS_SECRET_ACCESS_KEY", "awssecret"),
        ]);
        let c = both.credentials().unwrap().unwrap();
        assert_eq!((c.key_id.as_str(), c.secret.0.as_str()), ("r2id", "r2secret"));

        let aws =
            R2::new().with_env([("AWS_ACCESS_KEY_ID", "awsid"), ("AWS_SECRET_ACCESS_KEY", "awssecret")]);
        let c = aws.credentials().unwrap().unwrap();
        assert_eq!((c.key_id.as_str(), c.source.0), ("awsid", "AWS_ACCESS_KEY_ID"));

        let half = R2::new().with_env([("R2_ACCESS_KEY_ID", "r2id"), ("AWS_SECRET_ACCESS_KEY", "awssecret")]);
        let err = half.credentials().err().unwrap();
        assert!(err.contains("R2_SECRET_ACCESS_KEY") && !err.contains("awssecret"), "{err}");
        assert!(R2::new().with_env([]).credentials().unwrap().is_none());
    }

    #[test]
    fn secret_debug_and_redaction_hide_it() {
        let secret = Secret("s3cr3t".into());
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(secret.redact("sig for s3cr3t failed"), "sig for *** failed");
    }
}
