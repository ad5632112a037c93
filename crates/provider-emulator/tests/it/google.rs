#![expect(
    clippy::unwrap_used,
    reason = "test code fails loudly at the first surprise"
)]
use std::time::SystemTime;

use google_auth::{
    CLOUD_PLATFORM_SCOPE, GoogleAuth, GoogleAuthError, ServiceAccountKey, TokenSource,
};
use provider_emulator::{Emulator, ProviderFlavor, TestServiceAccount};
use serde_json::{Value, json};

use crate::common::{client, read_all, start_with_secrets};

const PROJECT: &str = "emulator-project";

fn gen_path(model: &str, method: &str) -> String {
    format!(
        "/v1/projects/{PROJECT}/locations/us-central1/publishers/google/models/{model}:{method}"
    )
}

fn gen_body(text: &str) -> Value {
    json!({"contents":[{"role":"user","parts":[{"text":text}]}],"systemInstruction":{"parts":[{"text":"Be brief."}]},"generationConfig":{"maxOutputTokens":2048}})
}

async fn vertex() -> (Emulator, ServiceAccountKey) {
    let (emu, secrets) = start_with_secrets(ProviderFlavor::Vertex).await;
    let key = ServiceAccountKey::from_json(secrets.get("vertex-service-account").unwrap()).unwrap();
    assert_eq!(key.token_uri(), emu.token_uri());
    (emu, key)
}

async fn token_for(key: &ServiceAccountKey) -> Result<String, GoogleAuthError> {
    let auth = GoogleAuth::new(
        TokenSource::ServiceAccount {
            key: key.clone(),
            token_uri: key.token_uri().to_owned(),
        },
        http_client::client().unwrap(),
    );
    auth.access_token().await.map(|s| s.expose().to_owned())
}

async fn post_assertion(emu: &Emulator, assertion: &str) -> (u16, Value) {
    let resp = client()
        .post(emu.token_uri())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
        ))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn vertex_token_from_a_signed_jwt_then_generate() {
    let (emu, key) = vertex().await;
    let token = token_for(&key).await.unwrap();
    assert!(token.starts_with("ya29."));
    let url = format!(
        "{}{}",
        emu.base_url(),
        gen_path("gemini-2.5-flash", "generateContent")
    );
    let resp = client()
        .post(&url)
        .bearer_auth(&token)
        .json(&gen_body("Why is the sky blue?"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let candidate = &body["candidates"][0];
    assert_eq!(candidate["content"]["role"], "model");
    assert_eq!(candidate["finishReason"], "STOP");
    let usage = &body["usageMetadata"];
    let prompt = usage["promptTokenCount"].as_u64().unwrap();
    let out = usage["candidatesTokenCount"].as_u64().unwrap();
    let thoughts = usage["thoughtsTokenCount"].as_u64().unwrap();
    assert!(thoughts > 0, "2.5 flash thinks by default");
    assert_eq!(
        usage["totalTokenCount"].as_u64().unwrap(),
        prompt + out + thoughts
    );
    assert_eq!(usage["trafficType"], "ON_DEMAND");
    assert!(body["createTime"].is_string());

    let mut no_thinking = gen_body("Why is the sky blue?");
    no_thinking["generationConfig"]["thinkingConfig"] = json!({"thinkingBudget": 0});
    let plain: Value = client()
        .post(&url)
        .bearer_auth(&token)
        .json(&no_thinking)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(plain["usageMetadata"].get("thoughtsTokenCount").is_none());
    assert_eq!(
        plain["candidates"][0]["content"]["parts"][0]["text"],
        candidate["content"]["parts"][0]["text"]
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn token_endpoint_rejects_foreign_keys_bad_audience_and_long_lifetimes() {
    let (emu, key) = vertex().await;
    let other = TestServiceAccount::generate(&emu.token_uri(), PROJECT, 99).unwrap();
    let other_key = ServiceAccountKey::from_json(&other.json).unwrap();
    // Same issuer, but signed by a key the emulator does not know.
    let claims = key.claims(&emu.token_uri(), CLOUD_PLATFORM_SCOPE, SystemTime::now());
    let forged = other_key.sign_jwt(&claims).unwrap();
    assert_eq!(
        post_assertion(&emu, &forged).await,
        (
            400,
            json!({"error":"invalid_grant","error_description":"Invalid JWT Signature."})
        )
    );

    let genuine = key.sign_jwt(&claims).unwrap();
    let (status, body) = post_assertion(&emu, &genuine).await;
    assert_eq!(status, 200);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);

    let mut wrong_aud = claims.clone();
    wrong_aud.aud = "https://example.invalid/token".into();
    let (status, body) = post_assertion(&emu, &key.sign_jwt(&wrong_aud).unwrap()).await;
    assert_eq!(status, 400);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("Invalid JWT: Failed audience check.")
    );

    let mut long = claims.clone();
    long.exp = long.iat + 7200;
    let (status, body) = post_assertion(&emu, &key.sign_jwt(&long).unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("Invalid JWT: Token must be a short-lived token")
    );

    let mut expired = claims.clone();
    expired.iat -= 7200;
    expired.exp = expired.iat + 3600;
    assert_eq!(
        post_assertion(&emu, &key.sign_jwt(&expired).unwrap())
            .await
            .0,
        400
    );

    let bad_grant = client()
        .post(emu.token_uri())
        .body("grant_type=password")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_grant.status(), 400);
    assert_eq!(
        bad_grant.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn vertex_rejects_missing_unknown_tokens_and_other_projects() {
    let (emu, key) = vertex().await;
    let url = format!(
        "{}{}",
        emu.base_url(),
        gen_path("gemini-2.5-flash", "generateContent")
    );
    let missing = client()
        .post(&url)
        .json(&gen_body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    let err: Value = missing.json().await.unwrap();
    assert_eq!(err["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(err["error"]["code"], 401);
    let made_up = client()
        .post(&url)
        .bearer_auth("ya29.invented")
        .json(&gen_body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(made_up.status(), 401);
    let token = token_for(&key).await.unwrap();
    let other_project = format!(
        "{}/v1/projects/someone-else/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent",
        emu.base_url()
    );
    let denied = client()
        .post(&other_project)
        .bearer_auth(&token)
        .json(&gen_body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    assert_eq!(
        denied.json::<Value>().await.unwrap()["error"]["status"],
        "PERMISSION_DENIED"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn vertex_streams_sse_with_crlf_and_no_done_and_arrays_without_alt() {
    let (emu, key) = vertex().await;
    let token = token_for(&key).await.unwrap();
    let url = format!(
        "{}{}?alt=sse",
        emu.base_url(),
        gen_path("gemini-2.5-flash", "streamGenerateContent")
    );
    let resp = client()
        .post(&url)
        .bearer_auth(&token)
        .json(&gen_body("Tell me a story"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = String::from_utf8(read_all(resp).await.unwrap()).unwrap();
    assert!(text.ends_with("\r\n\r\n"));
    assert!(!text.contains("[DONE]"));
    let events: Vec<Value> = text
        .split("\r\n\r\n")
        .filter(|e| !e.is_empty())
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    assert!(events.len() > 1);
    assert!(
        events[0]["usageMetadata"]
            .get("candidatesTokenCount")
            .is_none()
    );
    let last = events.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert!(
        last["usageMetadata"]["thoughtsTokenCount"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        last["usageMetadata"]["candidatesTokenCount"]
            .as_u64()
            .unwrap()
            > 0
    );

    let array_url = format!(
        "{}{}",
        emu.base_url(),
        gen_path("gemini-2.5-flash", "streamGenerateContent")
    );
    let resp = client()
        .post(&array_url)
        .bearer_auth(&token)
        .json(&gen_body("Tell me a story"))
        .send()
        .await
        .unwrap();
    let array: Vec<Value> = serde_json::from_slice(&read_all(resp).await.unwrap()).unwrap();
    assert_eq!(array.len(), events.len());
    let joined: String = array
        .iter()
        .map(|o| {
            o["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
        })
        .collect();
    let sse_joined: String = events
        .iter()
        .map(|o| {
            o["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(joined, sse_joined);

    let failing = client()
        .post(&array_url)
        .bearer_auth(&token)
        .json(&gen_body("[[emulator:rate_limit]]"))
        .send()
        .await
        .unwrap();
    assert_eq!(failing.status(), 429);
    let wrapped: Value = failing.json().await.unwrap();
    assert_eq!(wrapped[0]["error"]["status"], "RESOURCE_EXHAUSTED");
    emu.shutdown().await;
}

#[tokio::test]
async fn metadata_server_requires_its_header_and_issues_usable_tokens() {
    let (emu, _key) = vertex().await;
    let token_url = format!(
        "{}/computeMetadata/v1/instance/service-accounts/default/token",
        emu.root_url()
    );
    let refused = client().get(&token_url).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.headers()["metadata-flavor"], "Google");
    let auth = GoogleAuth::new(
        TokenSource::Metadata {
            base_url: emu.root_url(),
        },
        http_client::client().unwrap(),
    );
    let token = auth.access_token().await.unwrap();
    let project = client()
        .get(format!(
            "{}/computeMetadata/v1/project/project-id",
            emu.root_url()
        ))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap();
    assert_eq!(project.text().await.unwrap(), PROJECT);
    let url = format!(
        "{}{}",
        emu.base_url(),
        gen_path("gemini-2.5-flash-lite", "generateContent")
    );
    let resp = client()
        .post(&url)
        .bearer_auth(token.expose())
        .json(&gen_body("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn vertex_embeddings_predict_and_embed_content() {
    let (emu, key) = vertex().await;
    let token = token_for(&key).await.unwrap();
    let predict = format!(
        "{}{}",
        emu.base_url(),
        gen_path("text-embedding-005", "predict")
    );
    let resp: Value = client().post(&predict).bearer_auth(&token)
        .json(&json!({"instances":[{"content":"What is your name?","task_type":"RETRIEVAL_QUERY"}],"parameters":{"outputDimensionality":256}}))
        .send().await.unwrap().json().await.unwrap();
    let emb = &resp["predictions"][0]["embeddings"];
    assert_eq!(emb["values"].as_array().unwrap().len(), 256);
    assert!(emb["statistics"]["token_count"].as_u64().unwrap() > 0);
    assert_eq!(resp["metadata"]["billableCharacterCount"], 15);
    let embed = format!(
        "{}{}",
        emu.base_url(),
        gen_path("gemini-embedding-001", "embedContent")
    );
    let resp: Value = client().post(&embed).bearer_auth(&token)
        .json(&json!({"content":{"parts":[{"text":"hello"}]},"embedContentConfig":{"outputDimensionality":32}}))
        .send().await.unwrap().json().await.unwrap();
    assert_eq!(resp["embedding"]["values"].as_array().unwrap().len(), 32);
    assert!(resp["usageMetadata"]["promptTokenCount"].as_u64().unwrap() > 0);
    emu.shutdown().await;
}

#[tokio::test]
async fn gemini_api_key_auth_and_quota_errors() {
    let (emu, secrets) = start_with_secrets(ProviderFlavor::Gemini).await;
    let key = secrets.get("gemini-api-key").unwrap();
    let url = format!(
        "{}/v1beta/models/gemini-2.5-flash:generateContent",
        emu.base_url()
    );
    let by_header = client()
        .post(&url)
        .header("x-goog-api-key", key)
        .json(&gen_body("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_header.status(), 200);
    let body: Value = by_header.json().await.unwrap();
    assert!(
        body.get("createTime").is_none(),
        "the Gemini API has no createTime"
    );
    assert!(body["usageMetadata"].get("trafficType").is_none());
    let by_query = client()
        .post(format!("{url}?key={key}"))
        .json(&gen_body("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_query.status(), 200);
    let missing = client()
        .post(&url)
        .json(&gen_body("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 403);
    let wrong = client()
        .post(&url)
        .header("x-goog-api-key", "AIzaWrong")
        .json(&gen_body("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);
    let err: Value = wrong.json().await.unwrap();
    assert_eq!(err["error"]["details"][0]["reason"], "API_KEY_INVALID");

    let limited = client()
        .post(&url)
        .header("x-goog-api-key", key)
        .json(&gen_body("[[emulator:rate_limit]]"))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert!(!limited.headers().contains_key("retry-after"));
    let err: Value = limited.json().await.unwrap();
    let details = err["error"]["details"].as_array().unwrap();
    let retry = details
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.RetryInfo")
        .unwrap();
    assert_eq!(retry["retryDelay"], "37s");
    let quota = details
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.QuotaFailure")
        .unwrap();
    assert!(
        !quota["violations"][0]["quotaId"]
            .as_str()
            .unwrap()
            .contains("PerDay")
    );
    let daily: Value = client()
        .post(&url)
        .header("x-goog-api-key", key)
        .json(&gen_body("[[emulator:quota_exhausted]]"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        daily["error"]["details"][0]["violations"][0]["quotaId"]
            .as_str()
            .unwrap()
            .contains("PerDay")
    );
    let long = client()
        .post(&url)
        .header("x-goog-api-key", key)
        .json(&gen_body("[[emulator:context_too_long]]"))
        .send()
        .await
        .unwrap();
    assert_eq!(long.status(), 400);
    assert!(
        long.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("The input token count (")
    );

    let sse = client()
        .post(format!(
            "{}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            emu.base_url()
        ))
        .header("x-goog-api-key", key)
        .json(&gen_body("[[emulator:stream_error]]"))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let text = String::from_utf8(read_all(sse).await.unwrap()).unwrap();
    let last = text
        .split("\r\n\r\n")
        .filter(|e| !e.is_empty())
        .last()
        .unwrap();
    let last: Value = serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(last["error"]["status"], "INTERNAL");

    let batch: Value = client().post(format!("{}/v1beta/models/gemini-embedding-001:batchEmbedContents", emu.base_url()))
        .header("x-goog-api-key", key)
        .json(&json!({"requests":[{"model":"models/gemini-embedding-001","content":{"parts":[{"text":"a"}]},"outputDimensionality":16},{"model":"models/gemini-embedding-001","content":{"parts":[{"text":"b"}]},"outputDimensionality":16}]}))
        .send().await.unwrap().json().await.unwrap();
    assert_eq!(batch["embeddings"].as_array().unwrap().len(), 2);
    assert_eq!(
        batch["embeddings"][0]["values"].as_array().unwrap().len(),
        16
    );
    emu.shutdown().await;
}
