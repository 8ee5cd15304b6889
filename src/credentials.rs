//! Reading the account key from the referenced Secret.
