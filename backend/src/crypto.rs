//! Secrets at rest: XChaCha20-Poly1305 with a 32-byte key file (mode 0600) in
//! the data dir, and the [`Secret`] type that never prints itself.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

/// A secret value (client secret, password, token): redacted in `Debug` and
/// `Display`, and without `Serialize`, so it cannot leak by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(*****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

/// Why the key could not be used; each names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file is gone but the database holds encrypted secrets.
    #[error("the encryption key {0} is missing, but the database holds encrypted secrets. Restore the key file from your backup, or move the database away to start over")]
    Missing(PathBuf),
    /// The key file exists but is not 32 bytes.
    #[error("the encryption key {0} is {1} bytes long instead of 32; restore it from your backup")]
    WrongSize(PathBuf, usize),
    /// The key does not decrypt the stored secrets.
    #[error("the encryption key {0} does not decrypt the stored secrets: it is not the key they were saved with. Restore the right key file")]
    Mismatch(PathBuf),
    /// The file could not be read or written.
    #[error("cannot use the encryption key {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// Encrypts and decrypts secrets with the data dir's key.
#[derive(Clone)]
pub struct Cipher {
    aead: XChaCha20Poly1305,
    path: PathBuf,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cipher")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

const NONCE_LEN: usize = 24;

/// Writes a new private file (mode 0600) so that a crash leaves either no
/// file or the whole one: a temporary file in the same directory, fsynced,
/// renamed into place, then the directory fsynced. Fails if `path` exists.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_private(path, contents, false)
}

/// [`write_private_file`], replacing `path` if it exists: a reader sees the
/// old file or the new one, whole.
pub fn replace_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_private(path, contents, true)
}

fn write_private(path: &Path, contents: &[u8], replace: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        if replace {
            fs::rename(&tmp, path)?;
        } else {
            // A hard link refuses to replace an existing file, unlike rename:
            // two servers starting together cannot overwrite each other's key.
            fs::hard_link(&tmp, path)?;
            fs::remove_file(&tmp)?;
        }
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

impl Cipher {
    /// Loads `<data-dir>/secret.key`, creating it (mode 0600) when absent and
    /// `may_create` is true, that is when no encrypted secret exists yet.
    pub fn load_or_create(data_dir: &Path, may_create: bool) -> Result<Self, KeyError> {
        Self::load_or_create_at(&data_dir.join("secret.key"), may_create)
    }

    /// Loads the key file at `path` (`--secret-key-file`), creating it (mode
    /// 0600) when absent and `may_create`.
    pub fn load_or_create_at(path: &Path, may_create: bool) -> Result<Self, KeyError> {
        let path = path.to_path_buf();
        let key = match fs::read(&path) {
            Ok(bytes) if bytes.len() == 32 => bytes,
            Ok(bytes) => return Err(KeyError::WrongSize(path, bytes.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !may_create {
                    return Err(KeyError::Missing(path));
                }
                let mut key = vec![0u8; 32];
                rand::thread_rng().fill_bytes(&mut key);
                write_private_file(&path, &key).map_err(|e| KeyError::Io(path.clone(), e))?;
                key
            }
            Err(e) => return Err(KeyError::Io(path, e)),
        };
        let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o600));
        let aead = XChaCha20Poly1305::new_from_slice(&key)
            .map_err(|_| KeyError::WrongSize(path.clone(), key.len()))?;
        Ok(Cipher { aead, path })
    }

    /// Encrypts a secret; `field` is bound as associated data, so a value
    /// cannot be moved to another field.
    pub fn encrypt(&self, field: &str, secret: &Secret) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .aead
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret.expose().as_bytes(),
                    aad: field.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Decrypts what [`Cipher::encrypt`] produced.
    pub fn decrypt(&self, field: &str, blob: &[u8]) -> Result<Secret, KeyError> {
        if blob.len() < NONCE_LEN {
            return Err(KeyError::Mismatch(self.path.clone()));
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let plain = self
            .aead
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: field.as_bytes(),
                },
            )
            .map_err(|_| KeyError::Mismatch(self.path.clone()))?;
        String::from_utf8(plain)
            .map(Secret)
            .map_err(|_| KeyError::Mismatch(self.path.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "Secret(*****) *****");
    }

    #[test]
    fn round_trip_and_key_checks() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Cipher::load_or_create(dir.path(), false),
            Err(KeyError::Missing(_))
        ));
        let c = Cipher::load_or_create(dir.path(), true).unwrap();
        let mode = fs::metadata(dir.path().join("secret.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let blob = c.encrypt("client_secret", &Secret::new("v4lue"));
        assert!(!blob.windows(5).any(|w| w == b"v4lue"));
        assert_eq!(c.decrypt("client_secret", &blob).unwrap().expose(), "v4lue");
        assert!(c.decrypt("password", &blob).is_err(), "bound to its field");
        let again = Cipher::load_or_create(dir.path(), false).unwrap();
        assert_eq!(
            again.decrypt("client_secret", &blob).unwrap().expose(),
            "v4lue"
        );
        fs::write(dir.path().join("secret.key"), [7u8; 32]).unwrap();
        let wrong = Cipher::load_or_create(dir.path(), false).unwrap();
        assert!(matches!(
            wrong.decrypt("client_secret", &blob),
            Err(KeyError::Mismatch(_))
        ));
        fs::write(dir.path().join("secret.key"), [7u8; 5]).unwrap();
        assert!(matches!(
            Cipher::load_or_create(dir.path(), false),
            Err(KeyError::WrongSize(_, 5))
        ));
    }
}
