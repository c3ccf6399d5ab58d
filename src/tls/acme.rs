//! The ACME client: an account (created once, credentials kept in the certificate
//! directory), then per certificate one order with HTTP-01 challenges (STACK.md pitfall 5).
//!
//! The challenge responses are held in [`Challenges`]; the plain-HTTP listener
//! ([`super::http01`]) serves them at `/.well-known/acme-challenge/{token}` while an order
//! is pending.

use super::store::{self, CertsDir};
use super::{TlsError, unix_now};
use crate::config::TlsConfig;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Pending HTTP-01 responses: token → key authorization.
#[derive(Debug, Default, Clone)]
pub struct Challenges(Arc<RwLock<HashMap<String, String>>>);

impl Challenges {
    /// The key authorization for `token`, while its challenge is pending.
    pub fn get(&self, token: &str) -> Option<String> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).get(token).cloned()
    }

    fn insert(&self, token: String, key_authorization: String) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).insert(token, key_authorization);
    }

    fn remove(&self, token: &str) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).remove(token);
    }
}

/// Removes the tokens it holds when the order is done, whatever the outcome.
struct TokenGuard<'a> {
    challenges: &'a Challenges,
    tokens: Vec<String>,
}

impl Drop for TokenGuard<'_> {
    fn drop(&mut self) {
        for t in &self.tokens {
            self.challenges.remove(t);
        }
    }
}

/// `acme-account.json`: the credentials and the directory they belong to.
#[derive(Serialize, Deserialize)]
struct SavedAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// `acme-cert.json`: where the stored certificate came from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertMeta {
    /// The directory URL that issued it.
    pub directory: String,
    /// The names it was ordered for.
    pub domains: Vec<String>,
    /// When it was saved (Unix seconds).
    pub issued_at: i64,
}

/// A certificate obtained from the CA: PEM chain and PEM key.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Leaf first.
    pub chain_pem: String,
    /// The leaf's private key (PKCS#8).
    pub key_pem: String,
}

/// The ACME client for one directory.
pub struct AcmeClient {
    directory: String,
    contact: Option<String>,
    ca_file: Option<PathBuf>,
    store: CertsDir,
    account: Option<Account>,
}

impl std::fmt::Debug for AcmeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeClient").field("directory", &self.directory).finish_non_exhaustive()
    }
}

impl AcmeClient {
    /// A client for `cfg`'s directory; the account is loaded or created on first use.
    pub fn new(cfg: &TlsConfig, store: CertsDir) -> Result<Self, TlsError> {
        let directory = cfg.acme_directory_url().map_err(TlsError::Order)?;
        let contact = Some(cfg.acme_contact.trim())
            .filter(|c| !c.is_empty())
            .map(|c| if c.starts_with("mailto:") { c.to_owned() } else { format!("mailto:{c}") });
        Ok(Self { directory, contact, ca_file: cfg.acme_ca_file.clone(), store, account: None })
    }

    /// The directory URL.
    pub fn directory(&self) -> &str {
        &self.directory
    }

    fn builder(&self) -> Result<instant_acme::AccountBuilder, TlsError> {
        Ok(match &self.ca_file {
            Some(p) => Account::builder_with_root(p)?,
            None => Account::builder()?,
        })
    }

    /// The account: cached, else restored from `acme-account.json`, else created (and saved).
    async fn account(&mut self) -> Result<Account, TlsError> {
        if let Some(a) = &self.account {
            return Ok(a.clone());
        }
        let path = self.store.acme_account();
        let saved = match store::read_optional(&path)? {
            Some(bytes) => match serde_json::from_slice::<SavedAccount>(&bytes) {
                Ok(s) if s.directory == self.directory => Some(s),
                Ok(s) => {
                    tracing::info!(old = %s.directory, new = %self.directory, "ACME directory changed: creating a new account");
                    None
                }
                Err(source) => return Err(TlsError::Json { path, source }),
            },
            None => None,
        };
        let account = match saved {
            Some(s) => {
                let a = self.builder()?.from_credentials(s.credentials).await?;
                tracing::debug!(id = a.id(), "ACME account restored");
                a
            }
            None => {
                let contact: Vec<&str> = self.contact.as_deref().into_iter().collect();
                let new = NewAccount { contact: &contact, terms_of_service_agreed: true, only_return_existing: false };
                let (a, credentials) = self.builder()?.create(&new, self.directory.clone(), None).await?;
                let saved = SavedAccount { directory: self.directory.clone(), credentials };
                let json = serde_json::to_vec_pretty(&saved)
                    .map_err(|source| TlsError::Json { path: path.clone(), source })?;
                self.store.ensure()?;
                store::write_atomic(&path, &json, store::SECRET_MODE)?;
                tracing::info!(id = a.id(), directory = %self.directory, "ACME account created");
                a
            }
        };
        self.account = Some(account.clone());
        Ok(account)
    }

    /// Orders a certificate for `domains`, answering HTTP-01 challenges through `challenges`.
    /// On error the cached account is dropped (it is reloaded next time).
    pub async fn obtain(&mut self, domains: &[String], challenges: &Challenges) -> Result<Issued, TlsError> {
        let r = self.obtain_inner(domains, challenges).await;
        if r.is_err() {
            self.account = None;
        }
        r
    }

    async fn obtain_inner(&mut self, domains: &[String], challenges: &Challenges) -> Result<Issued, TlsError> {
        let account = self.account().await?;
        let ids: Vec<Identifier> = domains.iter().map(|d| Identifier::Dns(d.clone())).collect();
        let mut order = account.new_order(&NewOrder::new(&ids)).await?;
        let mut guard = TokenGuard { challenges, tokens: Vec::new() };

        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(TlsError::Order(format!("authorization for {} is {other:?}", authz.identifier())));
                }
            }
            let ident = authz.identifier().to_string();
            let mut challenge = authz
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| TlsError::Order(format!("the CA offers no http-01 challenge for {ident}")))?;
            challenges.insert(challenge.token.clone(), challenge.key_authorization().as_str().to_owned());
            guard.tokens.push(challenge.token.clone());
            tracing::debug!(%ident, token = %challenge.token, "answering http-01 challenge");
            challenge.set_ready().await?;
        }

        let retry =
            RetryPolicy::new().initial_delay(Duration::from_millis(250)).backoff(1.5).timeout(Duration::from_secs(90));
        let status = order.poll_ready(&retry).await?;
        if status != OrderStatus::Ready {
            let mut reasons = Vec::new();
            let mut authorizations = order.authorizations();
            while let Some(Ok(mut authz)) = authorizations.next().await {
                let ident = authz.identifier().to_string();
                if let Ok(state) = authz.refresh().await {
                    for c in &state.challenges {
                        if let Some(p) = &c.error {
                            reasons.push(format!("{ident}: {p}"));
                        }
                    }
                }
            }
            let why = if reasons.is_empty() { String::new() } else { format!(": {}", reasons.join("; ")) };
            return Err(TlsError::Order(format!("order is {status:?}{why}")));
        }
        let key_pem = order.finalize().await?;
        let chain_pem = order.poll_certificate(&retry).await?;
        drop(guard);
        Ok(Issued { chain_pem, key_pem })
    }

    /// Saves an issued certificate (key 0600) with its metadata.
    pub fn save(&self, issued: &Issued, domains: &[String]) -> Result<(), TlsError> {
        self.store.ensure()?;
        store::write_atomic(&self.store.acme_key(), issued.key_pem.as_bytes(), store::SECRET_MODE)?;
        store::write_atomic(&self.store.acme_cert(), issued.chain_pem.as_bytes(), store::PUBLIC_MODE)?;
        let meta = CertMeta { directory: self.directory.clone(), domains: domains.to_vec(), issued_at: unix_now() };
        let path = self.store.acme_meta();
        let json = serde_json::to_vec_pretty(&meta).map_err(|source| TlsError::Json { path: path.clone(), source })?;
        store::write_atomic(&path, &json, store::PUBLIC_MODE)
    }

    /// The saved certificate's metadata, if readable.
    pub fn saved_meta(&self) -> Option<CertMeta> {
        let bytes = store::read_optional(&self.store.acme_meta()).ok()??;
        serde_json::from_slice(&bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_removed_after_the_order() {
        let c = Challenges::default();
        {
            let mut g = TokenGuard { challenges: &c, tokens: Vec::new() };
            c.insert("tok".into(), "tok.thumb".into());
            g.tokens.push("tok".into());
            assert_eq!(c.get("tok").as_deref(), Some("tok.thumb"));
        }
        assert_eq!(c.get("tok"), None);
    }
}
