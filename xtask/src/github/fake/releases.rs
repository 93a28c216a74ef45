//! The fake's repository lookup, releases and their assets, and workflow dispatches, checking
//! what GitHub checks: the payload's fields and types (422), one release per tag (422
//! `already_exists`, GitHub's error body), one asset per name.

use std::collections::HashMap;

use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{delete, get, post},
    Json, Router,
};
use serde_json::{json, Value};

use super::{error, Data, Shared};

/// The routes of this part of the API.
pub(super) fn routes() -> Router<Shared> {
    let repo = "/repos/{owner}/{repo}";
    Router::new()
        .route(repo, get(repository_info))
        .route(
            &format!("{repo}/releases"),
            get(list_releases).post(create_release),
        )
        .route(
            &format!("{repo}/releases/tags/{{tag}}"),
            get(release_by_tag),
        )
        .route(&format!("{repo}/releases/{{id}}"), get(release_by_id))
        .route(
            &format!("{repo}/releases/{{id}}/assets"),
            get(list_assets).post(upload_asset),
        )
        .route(
            &format!("{repo}/releases/assets/{{asset}}"),
            delete(delete_asset),
        )
        .route(
            &format!("{repo}/actions/workflows/{{workflow}}/dispatches"),
            post(dispatch_workflow),
        )
}

/// A release as GitHub returns it, from the payload that created it.
fn release_json(data: &Data, id: u64, payload: &Value) -> Value {
    let base = &data.base;
    let repository = &data.repository;
    let tag = payload["tag_name"].as_str().unwrap_or_default();
    json!({
        "url": format!("{base}/repos/{repository}/releases/{id}"),
        "html_url": format!("https://github.com/{repository}/releases/tag/{tag}"),
        "assets_url": format!("{base}/repos/{repository}/releases/{id}/assets"),
        // GitHub's uploads host is another; here the fake takes the uploads too.
        "upload_url": format!("{base}/repos/{repository}/releases/{id}/assets{{?name,label}}"),
        "tarball_url": format!("{base}/repos/{repository}/tarball/{tag}"),
        "zipball_url": format!("{base}/repos/{repository}/zipball/{tag}"),
        "id": id,
        "node_id": format!("RE_fake{id}"),
        "tag_name": tag,
        "target_commitish": payload.get("target_commitish").cloned().unwrap_or(json!("main")),
        "name": payload.get("name").cloned().unwrap_or(Value::Null),
        "body": payload.get("body").cloned().unwrap_or(Value::Null),
        "draft": payload.get("draft").cloned().unwrap_or(json!(false)),
        "prerelease": payload.get("prerelease").cloned().unwrap_or(json!(false)),
        "created_at": "2026-11-28T06:00:00Z",
        "published_at": "2026-11-28T06:00:00Z",
        "author": null,
        "assets": [],
    })
}

async fn repository_info(
    State(shared): State<Shared>,
    Path((owner, repo)): Path<(String, String)>,
) -> Response {
    let base = shared.lock().unwrap().base.clone();
    Json(json!({
        "id": 1,
        "name": repo,
        "full_name": format!("{owner}/{repo}"),
        "url": format!("{base}/repos/{owner}/{repo}"),
    }))
    .into_response()
}

async fn list_releases(State(shared): State<Shared>) -> Response {
    let releases = shared.lock().unwrap().releases.clone();
    Json(Value::Array(releases)).into_response()
}

async fn release_by_tag(
    State(shared): State<Shared>,
    Path((_, _, tag)): Path<(String, String, String)>,
) -> Response {
    let mut data = shared.lock().unwrap();
    let found = data
        .releases
        .iter()
        .find(|r| r["tag_name"].as_str() == Some(tag.as_str()))
        .cloned();
    if let Some(release) = found {
        return Json(release).into_response();
    }
    if data.racing.as_deref() == Some(tag.as_str()) {
        data.racing = None;
        let id = data.releases.len() as u64 + 1;
        let other = json!({ "tag_name": tag, "name": "made by another writer" });
        let release = release_json(&data, id, &other);
        data.releases.push(release);
    }
    error(
        StatusCode::NOT_FOUND,
        "Not Found",
        "releases/releases#get-a-release-by-tag-name",
    )
}

async fn release_by_id(
    State(shared): State<Shared>,
    Path((_, _, id)): Path<(String, String, u64)>,
) -> Response {
    let data = shared.lock().unwrap();
    match data.releases.iter().find(|r| r["id"] == id) {
        Some(release) => Json(release.clone()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "Not Found",
            "releases/releases#get-a-release",
        ),
    }
}

/// An asset as GitHub returns it.
fn asset_json(data: &Data, release: u64, id: u64, name: &str, size: usize) -> Value {
    let base = &data.base;
    let repository = &data.repository;
    json!({
        "url": format!("{base}/repos/{repository}/releases/assets/{id}"),
        "browser_download_url": format!("https://github.com/{repository}/releases/download/r{release}/{name}"),
        "id": id,
        "node_id": format!("RA_fake{id}"),
        "name": name,
        "label": null,
        "state": "uploaded",
        "content_type": "application/octet-stream",
        "size": size,
        "digest": null,
        "download_count": 0,
        "created_at": "2026-11-28T06:00:00Z",
        "updated_at": "2026-11-28T06:00:00Z",
        "uploader": null,
    })
}

async fn list_assets(
    State(shared): State<Shared>,
    Path((_, _, release)): Path<(String, String, u64)>,
) -> Response {
    let data = shared.lock().unwrap();
    let assets: Vec<Value> = data
        .assets
        .iter()
        .filter(|a| a.release == release)
        .map(|a| asset_json(&data, a.release, a.id, &a.name, a.bytes.len()))
        .collect();
    Json(Value::Array(assets)).into_response()
}

/// `POST {upload_url}?name=NAME`: 201 with the asset; 422 `already_exists` for a name the
/// release has, as GitHub answers.
async fn upload_asset(
    State(shared): State<Shared>,
    Path((_, _, release)): Path<(String, String, u64)>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    const DOCS: &str = "releases/assets#upload-a-release-asset";
    let Some(name) = query.get("name").filter(|n| !n.is_empty()).cloned() else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "name is missing", DOCS);
    };
    let mut data = shared.lock().unwrap();
    if !data.releases.iter().any(|r| r["id"] == release) {
        return error(StatusCode::NOT_FOUND, "Not Found", DOCS);
    }
    if data
        .assets
        .iter()
        .any(|a| a.release == release && a.name == name)
    {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "message": "Validation Failed",
                "errors": [{"resource": "ReleaseAsset", "code": "already_exists", "field": "name"}],
                "documentation_url": format!("https://docs.github.com/rest/{DOCS}"),
            })),
        )
            .into_response();
    }
    data.next_id += 1;
    let id = data.next_id;
    let size = body.len();
    data.assets.push(super::FakeAsset {
        release,
        id,
        name: name.clone(),
        bytes: body.to_vec(),
    });
    let asset = asset_json(&data, release, id, &name, size);
    (StatusCode::CREATED, Json(asset)).into_response()
}

async fn delete_asset(
    State(shared): State<Shared>,
    Path((_, _, asset)): Path<(String, String, u64)>,
) -> Response {
    let mut data = shared.lock().unwrap();
    let before = data.assets.len();
    data.assets.retain(|a| a.id != asset);
    if data.assets.len() == before {
        return error(
            StatusCode::NOT_FOUND,
            "Not Found",
            "releases/assets#delete-a-release-asset",
        );
    }
    StatusCode::NO_CONTENT.into_response()
}

/// GitHub's 422 for a release payload's `field`.
fn invalid(field: &str, code: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({
            "message": "Validation Failed",
            "errors": [{ "resource": "Release", "code": code, "field": field }],
            "documentation_url": "https://docs.github.com/rest/releases/releases#create-a-release",
            "status": "422",
        })),
    )
        .into_response()
}

async fn create_release(State(shared): State<Shared>, body: Bytes) -> Response {
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Problems parsing JSON",
            "releases/releases#create-a-release",
        );
    };
    let Some(tag) = payload.get("tag_name").and_then(Value::as_str) else {
        return invalid("tag_name", "missing_field");
    };
    for (field, string) in [
        ("target_commitish", true),
        ("name", true),
        ("body", true),
        ("draft", false),
        ("prerelease", false),
    ] {
        let fine = match payload.get(field) {
            None | Some(Value::Null) => true,
            Some(value) if string => value.is_string(),
            Some(value) => value.is_boolean(),
        };
        if !fine {
            return invalid(field, "invalid");
        }
    }
    let mut data = shared.lock().unwrap();
    if data
        .releases
        .iter()
        .any(|r| r["tag_name"].as_str() == Some(tag))
    {
        return invalid("tag_name", "already_exists");
    }
    let id = data.releases.len() as u64 + 1;
    let release = release_json(&data, id, &payload);
    data.releases.push(release.clone());
    (StatusCode::CREATED, Json(release)).into_response()
}

/// `POST .../actions/workflows/{file}/dispatches`: 204 for a `ref` string (and optional
/// `inputs` object), 422 otherwise, as GitHub answers.
async fn dispatch_workflow(
    State(shared): State<Shared>,
    Path((_, _, workflow)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    const DOCS: &str = "actions/workflows#create-a-workflow-dispatch-event";
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "Problems parsing JSON", DOCS);
    };
    let fine = payload.get("ref").is_some_and(Value::is_string)
        && payload
            .get("inputs")
            .is_none_or(|i| i.is_object() || i.is_null());
    if !fine {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid request.\n\n\"ref\" wasn't supplied.",
            DOCS,
        );
    }
    shared.lock().unwrap().dispatches.push((workflow, payload));
    StatusCode::NO_CONTENT.into_response()
}
