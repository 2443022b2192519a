//! Who may use the review server: the holder of the random token printed in its URL (as
//! Jupyter does), from the page it served. Any local user or web page can reach a loopback
//! port; only the token proves the request comes from the person who started `inkflow review`.

use hyper::header::{COOKIE, HOST, HeaderMap, ORIGIN};

/// The cookie the page's token is kept in once the printed URL was opened, so the page's own
/// requests (images, actions) carry it without putting it in every link.
pub const TOKEN_COOKIE: &str = "inkflow_review";

/// The random token and the origin the server answers on.
#[derive(Clone, Debug)]
pub struct Guard {
    token: String,
    port: u16,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No token, or the wrong one: 403.
    Token,
    /// An action from another site, or a Host that is not this server (DNS rebinding): 403.
    Origin(String),
}

impl Guard {
    /// A guard with a new token from the operating system's random source.
    pub fn new(port: u16) -> anyhow::Result<Self> {
        let mut bytes = [0u8; 24];
        getrandom::getrandom(&mut bytes)
            .map_err(|e| anyhow::anyhow!("no random source for the token: {e}"))?;
        Ok(Guard { token: hex::encode(bytes), port })
    }

    /// The token, for the printed URL.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Checks a request: its Host is this server, it carries the token (in the query's
    /// `token=` or the cookie), and an action (`mutating`) comes from the page itself.
    pub fn check(&self, headers: &HeaderMap, query: Option<&str>, mutating: bool) -> Result<(), Refusal> {
        let host = headers.get(HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
        let own_hosts = [format!("127.0.0.1:{}", self.port), format!("localhost:{}", self.port)];
        if !own_hosts.iter().any(|own| own == host) {
            return Err(Refusal::Origin(format!("the Host {host:?} is not this server")));
        }
        let from_query =
            query.into_iter().flat_map(|q| q.split('&')).find_map(|pair| pair.strip_prefix("token="));
        let from_cookie = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|c| c.to_str().ok())
            .flat_map(|c| c.split(';'))
            .find_map(|pair| pair.trim().strip_prefix(TOKEN_COOKIE).and_then(|rest| rest.strip_prefix('=')));
        if ![from_query, from_cookie].into_iter().flatten().any(|given| same(given, &self.token)) {
            return Err(Refusal::Token);
        }
        if mutating {
            if let Some(site) = headers.get("sec-fetch-site").and_then(|s| s.to_str().ok())
                && site != "same-origin"
                && site != "none"
            {
                return Err(Refusal::Origin(format!("a {site} request may not act")));
            }
            if let Some(origin) = headers.get(ORIGIN).and_then(|o| o.to_str().ok())
                && !own_hosts.iter().any(|own| origin == format!("http://{own}"))
            {
                return Err(Refusal::Origin(format!("the origin {origin:?} may not act")));
            }
        }
        Ok(())
    }
}

/// Compares in time independent of where the strings differ, so the token cannot be guessed
/// a character at a time.
fn same(given: &str, token: &str) -> bool {
    given.len() == token.len() && given.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (hyper::header::HeaderName::from_static(name), value.parse().unwrap()))
            .collect()
    }

    #[test]
    fn the_token_comes_from_the_query_or_the_cookie_and_actions_from_the_page() {
        let guard = Guard::new(8123).unwrap();
        let cookie = format!("a=b; {TOKEN_COOKIE}={}", guard.token());
        let host = ("host", "127.0.0.1:8123");
        assert_eq!(guard.check(&headers(&[host]), Some(&format!("token={}", guard.token())), false), Ok(()));
        assert_eq!(guard.check(&headers(&[host, ("cookie", &cookie)]), None, false), Ok(()));
        assert_eq!(guard.check(&headers(&[host]), Some("token=nope"), false), Err(Refusal::Token));
        let evil = headers(&[host, ("cookie", &cookie), ("origin", "http://evil.example")]);
        assert!(matches!(guard.check(&evil, None, true), Err(Refusal::Origin(_))));
        assert_eq!(guard.check(&evil, None, false), Ok(()), "only actions are checked for their origin");
        let rebound = headers(&[("host", "evil.example:8123"), ("cookie", &cookie)]);
        assert!(matches!(guard.check(&rebound, None, false), Err(Refusal::Origin(_))));
        assert_ne!(Guard::new(8123).unwrap().token(), guard.token());
    }
}
