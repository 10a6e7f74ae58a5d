//! Tag policies: which tag of a repository's list is the latest (to be written).
