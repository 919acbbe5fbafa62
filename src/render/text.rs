//! The text dialects: no markup at all. [`Text`] is what WeCom `text`, Feishu and Slack
//! (with `mrkdwn` off) receive, within their byte budgets; [`Plain`] is the console's, the
//! same text in one part ending with a newline.

use super::dialect::Dialect;

/// Plain text within a byte budget: every provided method of [`Dialect`].
pub(crate) struct Text;

impl Dialect for Text {}

/// The console's report: plain text, one part, no budget.
pub(crate) struct Plain;

impl Dialect for Plain {
    fn bounded(&self) -> bool {
        false
    }

    fn ending(&self) -> &'static str {
        "\n"
    }
}
