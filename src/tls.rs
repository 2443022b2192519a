//! The one TLS crypto library: reqwest and object_store build their rustls clients from the
//! process's default provider, which is ring (see Cargo.toml: aws-lc-rs, reqwest's own default,
//! is not built).

use std::sync::Once;

/// Installs ring as rustls's process-wide crypto provider, once. Every HTTPS client (fal's
/// queue and pricing, the model catalogue, S3/R2 stores) calls this before it is built: without
/// it, reqwest's client builder panics for want of a provider.
pub fn install_crypto_provider() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // Err means another provider is already the default (an embedding program chose one),
        // which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    /// reqwest finds the provider: with `rustls-no-provider` and nothing installed, building a
    /// client panics.
    #[test]
    fn an_https_client_builds_after_the_provider_is_installed() {
        super::install_crypto_provider();
        super::install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
        reqwest::Client::builder().https_only(true).build().expect("a client with rustls on ring");
    }
}
