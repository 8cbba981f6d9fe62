//! Carrying out a VoiceXML session's `Fetch` actions over HTTP: the one place that decides
//! how each kind of fetch is sent, for calls (`runner`) and for `outdial vxml run` alike.

use outdial_vxml::{Enctype, Fetch, FetchFailure, FetchPurpose, Fetched, FormFile, Method};

use crate::fetch::{FetchError, FetchOptions, Fetcher, FilePart};

/// Performs one fetch the session asked for, reading at most `max_bytes`:
///
/// - with files, or `multipart/form-data` on a POST: a multipart POST (files force it);
/// - other POSTs: an `application/x-www-form-urlencoded` POST;
/// - a GET `<submit>`: the values in the query, never from the cache;
/// - other GETs (documents, scripts, data, grammars): the values in the query, through the
///   shared HTTP cache under the fetch's `maxage` / `maxstale`.
///
/// Every kind honours the fetch's `timeout`.
pub async fn perform(
    fetcher: &Fetcher,
    request: &Fetch,
    max_bytes: usize,
) -> Result<Fetched, FetchFailure> {
    let Fetch {
        url,
        method,
        purpose,
        form,
        files,
        enctype,
        timeout,
        maxage,
        maxstale,
        ..
    } = request;
    let (method, purpose, enctype) = (*method, *purpose, *enctype);
    let (timeout, maxage, maxstale) = (*timeout, *maxage, *maxstale);
    let multipart = !files.is_empty() || (enctype == Enctype::Multipart && method == Method::Post);
    let result = if multipart {
        let names: Vec<String> = files.iter().map(recording_file_name).collect();
        let parts: Vec<FilePart<'_>> = files
            .iter()
            .zip(&names)
            .map(|(file, filename)| FilePart {
                name: &file.name,
                filename,
                content_type: &file.content_type,
                data: &file.data,
            })
            .collect();
        fetcher
            .post_multipart(url, form, &parts, max_bytes, timeout)
            .await
    } else if method == Method::Post {
        fetcher
            .post_form_within(url, form, max_bytes, timeout)
            .await
    } else if purpose == FetchPurpose::Submit {
        fetcher
            .get_within(&with_query(url, form), max_bytes, timeout)
            .await
    } else {
        let options = FetchOptions {
            timeout,
            maxage,
            maxstale,
        };
        fetcher
            .get_cached(&with_query(url, form), max_bytes, options)
            .await
    };
    result
        .map(|f| Fetched {
            url: f.url,
            content_type: f.content_type,
            body: f.body,
        })
        .map_err(|e| FetchFailure {
            status: match &e {
                FetchError::Status { status, .. } => Some(*status),
                _ => None,
            },
            message: e.to_string(),
        })
}

/// The file name a recording is submitted with: its field name and an extension for its
/// media type, e.g. `message.wav`.
pub fn recording_file_name(file: &FormFile) -> String {
    let extension = match file.content_type.as_str() {
        "audio/wav" | "audio/x-wav" | "audio/wave" => "wav",
        "audio/basic" => "au",
        _ => "bin",
    };
    let stem: String = file
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{stem}.{extension}")
}

/// `url` with `form` appended as a query string (for `<submit method="get">`).
pub fn with_query(url: &str, form: &[(String, String)]) -> String {
    if form.is_empty() {
        return url.to_owned();
    }
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.query_pairs_mut().extend_pairs(form);
            parsed.into()
        }
        Err(_) => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use outdial_vxml::Recording;

    use super::*;

    #[test]
    fn recordings_are_wav_files_a_real_reader_accepts() {
        let pcm: Vec<i16> = (0..4000).map(|n| (n * 7 % 2000 - 1000) as i16).collect();
        let wav = Recording::wav_file(&pcm, 8000);
        assert_eq!(wav.len(), 44 + 8000);
        let reader = hound::WavReader::new(std::io::Cursor::new(wav)).expect("valid WAV");
        let spec = reader.spec();
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (1, 8000, 16)
        );
        assert_eq!(spec.sample_format, hound::SampleFormat::Int);
        let back: Vec<i16> = reader.into_samples().map(Result::unwrap).collect();
        assert_eq!(back, pcm);
        assert_eq!(Recording::wav_file(&[], 8000).len(), 44);
    }

    #[test]
    fn recordings_are_named_for_their_field_and_type() {
        let file = |name: &str, content_type: &str| FormFile {
            name: name.into(),
            content_type: content_type.into(),
            data: vec![],
        };
        assert_eq!(recording_file_name(&file("msg", "audio/wav")), "msg.wav");
        assert_eq!(
            recording_file_name(&file("a b/../c", "audio/basic")),
            "a_b____c.au"
        );
        assert_eq!(recording_file_name(&file("x", "video/mp4")), "x.bin");
    }

    /// Echoes each request as `METHOD path content-type` and the body's length, counting
    /// requests per path.
    async fn echo_server() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
        use axum::http::{HeaderMap, Uri};
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let app = axum::Router::new().fallback(
            move |method: axum::http::Method,
                  uri: Uri,
                  headers: HeaderMap,
                  body: axum::body::Bytes| {
                let log = Arc::clone(&log);
                async move {
                    let kind = headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .split(';')
                        .next()
                        .unwrap_or("-")
                        .to_owned();
                    let line = format!("{method} {uri} {kind} {}", body.len());
                    log.lock().unwrap().push(line.clone());
                    ([("cache-control", "max-age=60")], line)
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), seen)
    }

    fn fetch(url: String, method: Method, purpose: FetchPurpose) -> Fetch {
        Fetch {
            id: outdial_vxml::FetchId(1),
            url,
            method,
            purpose,
            form: vec![("n".into(), "1".into())],
            files: vec![],
            enctype: Enctype::UrlEncoded,
            timeout: None,
            maxage: None,
            maxstale: None,
            fetchaudio: None,
            fetchaudio_delay: outdial_vxml::session::DEFAULT_FETCHAUDIO_DELAY,
            fetchaudio_minimum: outdial_vxml::session::DEFAULT_FETCHAUDIO_MINIMUM,
        }
    }

    #[tokio::test]
    async fn each_kind_of_fetch_is_sent_its_own_way() {
        let (base, seen) = echo_server().await;
        let fetcher = Fetcher::new("test", Duration::from_secs(5)).unwrap();
        let body = |r: Result<Fetched, FetchFailure>| String::from_utf8(r.unwrap().body).unwrap();

        let document = fetch(format!("{base}/doc"), Method::Get, FetchPurpose::Document);
        assert_eq!(
            body(perform(&fetcher, &document, 1 << 20).await),
            "GET /doc?n=1 - 0"
        );
        perform(&fetcher, &document, 1 << 20).await.unwrap();
        let data = fetch(format!("{base}/doc"), Method::Get, FetchPurpose::Data);
        perform(&fetcher, &data, 1 << 20).await.unwrap();
        assert_eq!(
            seen.lock().unwrap().len(),
            1,
            "GETs of documents and data are cached"
        );

        let submit = fetch(format!("{base}/doc"), Method::Get, FetchPurpose::Submit);
        perform(&fetcher, &submit, 1 << 20).await.unwrap();
        assert_eq!(
            seen.lock().unwrap().len(),
            2,
            "a GET submit is never cached"
        );

        let post = fetch(format!("{base}/s"), Method::Post, FetchPurpose::Submit);
        assert_eq!(
            body(perform(&fetcher, &post, 1 << 20).await),
            "POST /s application/x-www-form-urlencoded 3"
        );

        let mut recording = fetch(format!("{base}/r"), Method::Get, FetchPurpose::Submit);
        recording.files = vec![FormFile {
            name: "msg".into(),
            content_type: "audio/wav".into(),
            data: Recording::wav_file(&[0; 800], 8000),
        }];
        let answer = body(perform(&fetcher, &recording, 1 << 20).await);
        let length: usize = answer
            .strip_prefix("POST /r multipart/form-data ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("files force a multipart POST: {answer}"));
        assert!(length > 44 + 1600, "{answer}");

        let mut multipart = fetch(format!("{base}/m"), Method::Post, FetchPurpose::Submit);
        multipart.enctype = Enctype::Multipart;
        let answer = body(perform(&fetcher, &multipart, 1 << 20).await);
        assert!(
            answer.starts_with("POST /m multipart/form-data "),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn a_failed_fetch_reports_its_status() {
        let fetcher = Fetcher::new("test", Duration::from_secs(5)).unwrap();
        let missing = fetch("ftp://x/y".into(), Method::Get, FetchPurpose::Script);
        let failure = perform(&fetcher, &missing, 1024).await.unwrap_err();
        assert_eq!(failure.status, None);
        assert!(failure.message.contains("ftp"), "{}", failure.message);
    }

    #[test]
    fn get_submits_carry_the_values_in_the_query() {
        let url = with_query(
            "http://h/s?x=1",
            &[
                ("confirm".into(), "true".into()),
                ("n".into(), "a b".into()),
            ],
        );
        assert_eq!(url, "http://h/s?x=1&confirm=true&n=a+b");
        assert_eq!(with_query("http://h/s", &[]), "http://h/s");
    }
}
