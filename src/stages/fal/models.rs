//! `inkflow models`: the catalogue as users see it, and its refresh from fal's APIs (the
//! model's OpenAPI schema and its price from the platform pricing API) into the user's own
//! catalogue folder.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::catalogue::{self, Model, from_openapi, user_dir, user_file};
use super::key::Environment;
use super::options::check_base_url;
use super::pricing::fetch_live_price;

/// Where fal publishes the OpenAPI schema of each endpoint.
const DEFAULT_API_BASE_URL: &str = "https://fal.ai";

/// fal's platform API (pricing), as `inkflow check` uses it.
pub(super) const DEFAULT_PLATFORM_URL: &str = "https://api.fal.ai";

/// How long a call to fal's schema or pricing API may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A model as `inkflow models` lists it.
pub struct ModelEntry {
    /// The entry.
    pub model: Model,
    /// Whether it comes from the user's catalogue folder (refreshed or added).
    pub from_user: bool,
}

/// Every model of the catalogue, the user's entries over the built-in ones.
pub fn all_models(env: &Environment) -> Vec<ModelEntry> {
    catalogue::all(env).into_iter().map(|(model, from_user)| ModelEntry { model, from_user }).collect()
}

/// Model `id`, or `None` when the catalogue does not have it.
pub fn find_model(id: &str, env: &Environment) -> Result<Option<Model>, String> {
    catalogue::find(id, env)
}

/// What a stage on a model inkflow does not know is told.
pub(super) fn unchecked_warning(id: &str) -> String {
    format!(
        "model {id:?} is not in inkflow's catalogue, so its inputs run unchecked and it has no price: \
         `inkflow models {id} --refresh` adds it from fal's APIs"
    )
}

/// The platform API's URL: `FAL_PLATFORM_BASE_URL`, else fal's.
pub(super) fn platform_url(env: &Environment) -> Result<reqwest::Url, String> {
    let url = env.var("FAL_PLATFORM_BASE_URL").unwrap_or_else(|| DEFAULT_PLATFORM_URL.to_owned());
    check_base_url(&url).map_err(|e| format!("FAL_PLATFORM_BASE_URL: {e}"))
}

/// Fetches model `id`'s schema and price from fal and writes its entry into the user's
/// catalogue folder, where it wins over the built-in entry. Needs the key (the pricing API
/// does). Returns the file written and the entry.
pub async fn refresh_model(id: &str, env: &Environment) -> Result<(PathBuf, Model), String> {
    let Some((key, _)) = env.api_key() else {
        return Err("refreshing a model needs FAL_KEY (fal's pricing API wants the key)".into());
    };
    let dir = user_dir(env).ok_or("no folder for the user catalogue: set INKFLOW_MODELS_DIR or HOME")?;
    let previous = catalogue::find(id, env)?;
    let api = env.var("FAL_API_BASE_URL").unwrap_or_else(|| DEFAULT_API_BASE_URL.to_owned());
    let api = check_base_url(&api).map_err(|e| format!("FAL_API_BASE_URL: {e}"))?;
    let url = format!("{}/api/openapi/queue/openapi.json", api.as_str().trim_end_matches('/'));
    let url = reqwest::Url::parse_with_params(&url, [("endpoint_id", id)]).map_err(|e| e.to_string())?;
    crate::tls::install_crypto_provider();
    let client = reqwest::Client::builder().timeout(CALL_TIMEOUT).build().map_err(|e| e.to_string())?;
    let response = client.get(url.clone()).send().await.map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url} answered HTTP {}: is {id} a fal endpoint?", response.status().as_u16()));
    }
    let openapi: Value = response.json().await.map_err(|e| format!("{url} answered no JSON: {e}"))?;
    let live = fetch_live_price(&platform_url(env)?, &key, id, CALL_TIMEOUT).await;
    let price = match (live, &previous) {
        (Ok(live), Some(previous)) => previous.price.with_unit_price(live.unit, live.usd),
        (Ok(live), None) => {
            super::pricing::Price { unit: live.unit, usd: live.usd, tiers: None, surcharges: Vec::new() }
        }
        (Err(e), Some(previous)) => {
            tracing::warn!("{}; keeping the catalogue's price", key.redact(&e));
            previous.price.clone()
        }
        (Err(e), None) => return Err(key.redact(&format!("{e}, and the catalogue has no price for {id}"))),
    };
    let model = from_openapi(id, &openapi, previous.as_ref(), price).map_err(|e| format!("{url}: {e}"))?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let file = user_file(&dir, id);
    let text = serde_json::to_string_pretty(&model).map_err(|e| e.to_string())?;
    std::fs::write(&file, text + "\n").map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    Ok((file, model))
}
