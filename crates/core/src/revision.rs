//! The commit a desired set was rendered from.

use serde::{Deserialize, Serialize};

/// A resolved source revision: the commit and who made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    /// Full commit SHA (hex), or a content digest for sources that are not Git.
    pub id: String,
    /// What was asked for (branch, tag, SHA, semver range), as given.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub requested: String,
    /// Commit author, `Name <email>`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub author: String,
    /// First line of the commit message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Commit time, RFC 3339.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub time: String,
}

impl Revision {
    /// The first 12 characters of the id, as printed for people.
    pub fn short(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }
}
