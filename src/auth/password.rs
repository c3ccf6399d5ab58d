//! Secrets: argon2id password hashes, API tokens and their SHA-256, random identifiers,
//! constant-time comparison. No state, no I/O beyond the OS random source.
//!
//! Passwords are hashed with argon2id and the argon2 crate's default parameters
//! (m = 19 MiB, t = 2, p = 1: OWASP's recommendation). Verification takes the parameters
//! from the stored PHC string. API tokens are 32 random bytes: nobody can guess them, so a
//! single SHA-256 is enough to store them (a slow hash buys nothing there and would make every
//! API request slow).

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2};
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

/// The prefix of every API token (makes leaked tokens easy to recognize and scan for).
pub const TOKEN_PREFIX: &str = "vigil_";

/// Hashes `password` with argon2id and a random salt; the PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Whether `phc` is an argon2 PHC string this build can verify.
pub fn check_hash(phc: &str) -> Result<(), String> {
    let h = PasswordHash::new(phc).map_err(|e| format!("not a PHC string ({e}); use `vigil user add`"))?;
    let alg = h.algorithm.as_str();
    if Algorithm::try_from(alg).is_err() {
        return Err(format!("algorithm {alg:?} is not argon2"));
    }
    if h.hash.is_none() {
        return Err("no hash in the PHC string".into());
    }
    Ok(())
}

/// Checks `password` against a PHC string in constant time (for a given hash); `false` for a
/// wrong password or a hash that does not parse.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default().verify_password(password.as_bytes(), &h).is_ok(),
        Err(_) => false,
    }
}

/// `n` random bytes from the OS.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut b = [0u8; N];
    SystemRandom::new().fill(&mut b).map_err(|_| "the OS random source failed".to_owned())?;
    Ok(b)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Parses lowercase or uppercase hex into exactly `N` bytes.
pub fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != N * 2 {
        return None;
    }
    let nib = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nib(b[2 * i])? << 4) | nib(b[2 * i + 1])?;
    }
    Some(out)
}

/// SHA-256.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A new API token and the `sha256:...` string to store for it.
pub fn new_token() -> Result<(String, String), String> {
    let token = format!("{TOKEN_PREFIX}{}", hex(&random_bytes::<32>()?));
    let stored = token_hash(&token);
    Ok((token, stored))
}

/// The stored form of a token: `sha256:<hex>`.
pub fn token_hash(token: &str) -> String {
    format!("sha256:{}", hex(&sha256(token.as_bytes())))
}

/// Equal in constant time (for equal lengths; lengths are not secret here).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        check_hash(&h).unwrap();
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct hors", &h));
        assert!(!verify_password("correct horse", "garbage"));
        assert!(check_hash("$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA").is_err());
        assert!(check_hash("hunter2").is_err());
    }

    #[test]
    fn tokens_and_hex() {
        let (t, h) = new_token().unwrap();
        assert!(t.starts_with(TOKEN_PREFIX) && t.len() == TOKEN_PREFIX.len() + 64);
        assert_eq!(token_hash(&t), h);
        assert!(super::super::config::valid_token_hash(&h));
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(hex(&bytes), "0001abff");
        assert_eq!(unhex::<4>("0001ABff"), Some(bytes));
        assert_eq!(unhex::<4>("0001abf"), None);
        assert_eq!(unhex::<4>("0001abfg"), None);
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
