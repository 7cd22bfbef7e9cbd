//! The ProGet upstream: its packages API and universal packages, answered
//! from the cache (ProGet NuGet feeds go through the V3 code in `app`).

mod packages;
pub mod purl;
mod upack;

use url::Url;

use crate::app::App;
use crate::error::AppError;

impl App {
    /// A URL on the ProGet server: the configured base plus path segments
    /// (each percent-encoded as one segment) and an optional query.
    pub(crate) fn proget_url(
        &self,
        segments: &[&str],
        query: Option<&str>,
    ) -> Result<Url, AppError> {
        let mut url = self
            .config
            .proget
            .url
            .clone()
            .ok_or(AppError::Unconfigured("a ProGet upstream"))?;
        url.path_segments_mut()
            .map_err(|_| AppError::Unconfigured("a usable ProGet URL"))?
            .pop_if_empty()
            .extend(segments);
        url.set_query(query);
        Ok(url)
    }
}
