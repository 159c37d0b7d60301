//! Which exposition format to answer a scrape with, from its `Accept` header (RFC 9110 content
//! negotiation, as Prometheus's client libraries do it).
//!
//! Prometheus 2.x sends, with native histograms enabled,
//! `application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.2`
//! and otherwise `application/openmetrics-text;version=1.0.0,...;text/plain;version=0.0.4;q=0.5,*/*;q=0.1`.

use super::prometheus::Dialect;
use super::protobuf;

/// An exposition format served on `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposition {
    /// Text, in one of its dialects.
    Text(Dialect),
    /// Delimited protobuf, with native histograms.
    Protobuf,
}

impl Exposition {
    /// The Content-Type of the answer.
    pub fn content_type(self) -> &'static str {
        match self {
            Exposition::Text(dialect) => dialect.content_type(),
            Exposition::Protobuf => protobuf::CONTENT_TYPE,
        }
    }
}

/// The format for `accept` (the header's value, if sent): the acceptable one with the highest
/// `q`, the earliest on a tie; Prometheus text when nothing specific is acceptable.
pub fn negotiate(accept: Option<&str>) -> Exposition {
    let mut best: Option<(f64, Exposition)> = None;
    for range in accept.unwrap_or_default().split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media_type = parts.next().unwrap_or_default().to_ascii_lowercase();
        let mut q = 1.0;
        let (mut version, mut proto, mut encoding) = (None, None, None);
        for parameter in parts {
            let Some((name, value)) = parameter.split_once('=') else { continue };
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "q" => q = value.parse().unwrap_or(0.0),
                "version" => version = Some(value),
                "proto" => proto = Some(value),
                "encoding" => encoding = Some(value),
                _ => {}
            }
        }
        let format = match media_type.as_str() {
            "application/vnd.google.protobuf"
                if proto == Some("io.prometheus.client.MetricFamily") && encoding == Some("delimited") =>
            {
                Exposition::Protobuf
            }
            "application/openmetrics-text" if matches!(version, None | Some("1.0.0")) => {
                Exposition::Text(Dialect::OpenMetrics)
            }
            "text/plain" if matches!(version, None | Some("0.0.4")) => Exposition::Text(Dialect::Prometheus),
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(best_q, _)| q > best_q) {
            best = Some((q, format));
        }
    }
    best.map_or(Exposition::Text(Dialect::Prometheus), |(_, format)| format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_prometheus_sends() {
        let native = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(negotiate(Some(native)), Exposition::Protobuf);
        let default = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(default)), Exposition::Text(Dialect::OpenMetrics));
    }

    #[test]
    fn anything_else_is_prometheus_text() {
        let text = Exposition::Text(Dialect::Prometheus);
        for accept in [None, Some(""), Some("*/*"), Some("text/html"), Some("application/json;q=1")] {
            assert_eq!(negotiate(accept), text, "{accept:?}");
        }
        // The wrong protobuf message or encoding, an OpenMetrics version we do not write.
        assert_eq!(negotiate(Some("application/vnd.google.protobuf;proto=other.Message;encoding=delimited")), text);
        assert_eq!(
            negotiate(Some("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text")),
            text
        );
        assert_eq!(negotiate(Some("application/openmetrics-text; version=0.0.1")), text);
    }

    #[test]
    fn q_values_decide_and_zero_refuses() {
        let accept = "text/plain;version=0.0.4;q=0.9, application/openmetrics-text; version=\"1.0.0\"; q=0.5";
        assert_eq!(negotiate(Some(accept)), Exposition::Text(Dialect::Prometheus));
        let refused = "application/openmetrics-text;q=0, text/plain;q=0.1";
        assert_eq!(negotiate(Some(refused)), Exposition::Text(Dialect::Prometheus));
        let tie = "application/openmetrics-text, text/plain";
        assert_eq!(negotiate(Some(tie)), Exposition::Text(Dialect::OpenMetrics));
        let upper = "Application/Vnd.Google.Protobuf; Proto=io.prometheus.client.MetricFamily; Encoding=delimited";
        assert_eq!(negotiate(Some(upper)), Exposition::Protobuf);
    }
}
