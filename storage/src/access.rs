//! Who may open a sealed file: its key, wrapped to each reader with the age
//! format's X25519 recipients (client side; feature `client`).
//!
//! A reader is an age identity (`AGE-SECRET-KEY-1…`), which it keeps; its
//! recipient (`age1…`) is public. The file key is encrypted to each recipient as a
//! small age file (an *envelope*); anyone holding one of the identities can unwrap
//! it, nobody else can. Sharing a file with another reader is one more envelope:
//! the chunks are not touched. age draws a fresh ephemeral key per envelope from
//! the OS generator, which is why this lives outside the core.

use crate::seal::FileKey;

/// A reader's public half, as age prints it (`age1…`).
pub type Recipient = age::x25519::Recipient;
/// A reader's secret half, as age prints it (`AGE-SECRET-KEY-1…`).
pub type Identity = age::x25519::Identity;

/// Why a key could not be wrapped or unwrapped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// The recipient text is not an age X25519 recipient.
    #[error("`{0}` is not an age recipient (age1…): {1}")]
    Recipient(String, String),
    /// The identity text is not an age X25519 identity.
    #[error("not an age identity (AGE-SECRET-KEY-1…): {0}")]
    Identity(String),
    /// Wrapping failed.
    #[error("cannot wrap the file key: {0}")]
    Wrap(String),
    /// None of the envelopes opens with this identity.
    #[error("this identity is not a reader of the file")]
    NotAReader,
    /// An envelope opened but does not hold a key.
    #[error("an envelope holds {0} bytes, not a 32-byte key")]
    Malformed(usize),
}

/// Parses a recipient.
pub fn recipient(text: &str) -> Result<Recipient, AccessError> {
    text.trim()
        .parse::<Recipient>()
        .map_err(|e| AccessError::Recipient(text.chars().take(80).collect(), e.to_string()))
}

/// Parses an identity (the file's first line that is not a comment).
pub fn identity(text: &str) -> Result<Identity, AccessError> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    line.parse::<Identity>()
        .map_err(|e| AccessError::Identity(e.to_string()))
}

/// A new identity (from the OS generator, through age).
pub fn generate() -> Identity {
    Identity::generate()
}

/// The identity's text, to be written to a file only its owner can read.
pub fn identity_text(id: &Identity) -> String {
    use age::secrecy::ExposeSecret;
    id.to_string().expose_secret().to_string()
}

/// `key` wrapped to `to`.
pub fn wrap(key: &FileKey, to: &Recipient) -> Result<Vec<u8>, AccessError> {
    age::encrypt(to, &key.to_bytes()).map_err(|e| AccessError::Wrap(e.to_string()))
}

/// The key in the first of `envelopes` that `id` opens.
pub fn unwrap<'a>(
    id: &Identity,
    envelopes: impl IntoIterator<Item = &'a [u8]>,
) -> Result<FileKey, AccessError> {
    for env in envelopes {
        if let Ok(bytes) = age::decrypt(id, env) {
            let key: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| AccessError::Malformed(bytes.len()))?;
            return Ok(FileKey::from_bytes(key));
        }
    }
    Err(AccessError::NotAReader)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_readers_unwrap_the_key() {
        let alice = generate();
        let bob = generate();
        let eve = generate();
        let key = FileKey::from_bytes([42; 32]);
        let to_alice = wrap(&key, &alice.to_public()).unwrap();
        let to_bob = wrap(&key, &recipient(&bob.to_public().to_string()).unwrap()).unwrap();
        let envs = [to_alice.as_slice(), to_bob.as_slice()];
        assert_eq!(unwrap(&alice, envs).unwrap().to_bytes(), [42; 32]);
        let bob_again = identity(&format!("# bob\n{}\n", identity_text(&bob))).unwrap();
        assert_eq!(unwrap(&bob_again, envs).unwrap().to_bytes(), [42; 32]);
        assert!(matches!(unwrap(&eve, envs), Err(AccessError::NotAReader)));
        assert!(recipient("age1nope").is_err());
        assert!(identity("hunter2").is_err());
    }
}
