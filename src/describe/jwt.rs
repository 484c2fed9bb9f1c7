//! JSON Web Tokens minted per user for systems that verify them (`[users.derive] NAME = { jwt =
//! "HS256", … }`): the header `{"alg":"HS256","typ":"JWT"}`, the user's claims, and an
//! HMAC-SHA256 signature with a key read from the environment when the scenario is read. The
//! key is held in memory only: never written, never printed (a missing variable is named, its
//! value never).

use base64::Engine as _;
use sha2::Digest as _;

/// What a token is signed with.
pub struct Signer {
    /// The key, from the environment.
    key: Vec<u8>,
    /// Seconds a token stays valid (`exp` = `iat` + this); `None`: no `iat`/`exp` claims.
    valid_for_s: Option<u64>,
    /// When the tokens are made, Unix seconds (`iat`).
    now_unix_s: u64,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer { key: *** }")
    }
}

impl Signer {
    /// A signer whose key is the environment variable `var` (a message naming it when unset
    /// or empty).
    pub fn from_env(var: &str, valid_for_s: Option<u64>) -> Result<Signer, String> {
        match std::env::var(var) {
            Ok(key) if !key.is_empty() => Ok(Signer::new(key.into_bytes(), valid_for_s)),
            _ => Err(format!(
                "the JWT key ${{{var}}} is not set: export it before the run (it is read from the environment only, never written)"
            )),
        }
    }

    /// A signer over `key`.
    pub fn new(key: Vec<u8>, valid_for_s: Option<u64>) -> Signer {
        let now_unix_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Signer {
            key,
            valid_for_s,
            now_unix_s,
        }
    }

    /// The HS256 token of `claims` (a JSON object's text, e.g. `{"sub":"42"}`), with `iat` and
    /// `exp` added when the signer gives tokens a lifetime, appended to `out`.
    pub fn token(&self, claims: &[u8], out: &mut Vec<u8>) {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut payload = claims.trim_ascii().to_vec();
        if let Some(valid) = self.valid_for_s
            && payload.last() == Some(&b'}')
        {
            payload.pop();
            let empty = payload.trim_ascii() == b"{";
            let extra = format!(
                "{}\"iat\":{},\"exp\":{}}}",
                if empty { "" } else { "," },
                self.now_unix_s,
                self.now_unix_s + valid
            );
            payload.extend_from_slice(extra.as_bytes());
        }
        let start = out.len();
        out.extend_from_slice(b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#).as_bytes());
        out.push(b'.');
        out.extend_from_slice(b64.encode(&payload).as_bytes());
        let signature = hmac_sha256(&self.key, &out[start..]);
        out.push(b'.');
        out.extend_from_slice(b64.encode(signature).as_bytes());
    }
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&sha2::Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = sha2::Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    sha2::Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // A key longer than a block is hashed first (test case 6).
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(mac[..4], [0x60, 0xe4, 0x31, 0x59]);
    }

    #[test]
    fn tokens_are_header_claims_and_signature() {
        let s = Signer {
            key: b"secret".to_vec(),
            valid_for_s: Some(60),
            now_unix_s: 1_700_000_000,
        };
        let mut out = Vec::new();
        s.token(br#"{"sub":"42"}"#, &mut out);
        let text = String::from_utf8(out).unwrap();
        let parts: Vec<&str> = text.split('.').collect();
        assert_eq!(parts.len(), 3);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        assert_eq!(
            b64.decode(parts[0]).unwrap(),
            br#"{"alg":"HS256","typ":"JWT"}"#
        );
        assert_eq!(
            String::from_utf8(b64.decode(parts[1]).unwrap()).unwrap(),
            r#"{"sub":"42","iat":1700000000,"exp":1700000060}"#
        );
        let mac = hmac_sha256(b"secret", format!("{}.{}", parts[0], parts[1]).as_bytes());
        assert_eq!(b64.decode(parts[2]).unwrap(), mac);
        assert!(!format!("{s:?}").contains("secret"));
    }
}
