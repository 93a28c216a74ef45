//! `cargo xtask release tag`, run as a user would, against a temporary git repository (real git)
//! with a bare remote, and a FAKE of GitHub's REST API on 127.0.0.1 (see [`fake_github`]).

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use fake_github::FakeGitHub;

const TOKEN: &str = "ghs_fake_token_0123456789";
const REPOSITORY: &str = "akidb/akidb-candle";
const NOTES: &str = "# AkiDB 2.0\n\nThe Candle embedding service is generally available.\n";

/// The project's FAKE of GitHub's REST API (`xtask/src/github/fake/`), the same that `cargo
/// xtask workflows run` serves: it checks the User-Agent, the token and the repository as GitHub
/// does, and answers with GitHub's paths, JSON shapes and error bodies.
#[allow(dead_code)]
#[path = "../src/github/fake/mod.rs"]
mod fake_github;

/// Runs `git` in `dir`, failing the test on error.
fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A repository with one commit and RELEASE_NOTES.md, whose `origin` is a bare repository.
struct Fixture {
    _temp: tempfile::TempDir,
    work: PathBuf,
    bare: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let temp = tempfile::tempdir().expect("temp dir");
        let work = temp.path().join("work");
        let bare = temp.path().join("origin.git");
        std::fs::create_dir_all(&work).expect("mkdir");
        git(temp.path(), &["init", "--quiet", "--bare", "origin.git"]);
        git(&work, &["init", "--quiet", "--initial-branch", "main"]);
        git(&work, &["config", "user.name", "Release Test"]);
        git(&work, &["config", "user.email", "release@example.com"]);
        std::fs::write(work.join("RELEASE_NOTES.md"), NOTES).expect("notes");
        git(&work, &["add", "RELEASE_NOTES.md"]);
        git(&work, &["commit", "--quiet", "-m", "first"]);
        let bare_text = bare.display().to_string();
        git(&work, &["remote", "add", "origin", &bare_text]);
        git(&work, &["push", "--quiet", "origin", "main"]);
        Fixture {
            _temp: temp,
            work,
            bare,
        }
    }

    fn commit(&self, name: &str) -> String {
        std::fs::write(self.work.join(name), name).expect("write");
        git(&self.work, &["add", name]);
        git(&self.work, &["commit", "--quiet", "-m", name]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn head(&self) -> String {
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// `cargo xtask release tag --tag TAG ...` with `token` as GITHUB_TOKEN.
    fn release(&self, api: &str, token: Option<&str>, extra: &[&str]) -> Output {
        self.release_in(REPOSITORY, api, token, extra)
    }

    /// The same, releasing in `repository`.
    fn release_in(
        &self,
        repository: &str,
        api: &str,
        token: Option<&str>,
        extra: &[&str],
    ) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
        command
            .args([
                "release",
                "tag",
                "--tag",
                "v2.0.0",
                "--message",
                "GA Release",
            ])
            .args(["--api-url", api, "--repository", repository])
            .arg("--repo-dir")
            .arg(&self.work)
            .args(extra)
            .env_remove("GITHUB_TOKEN")
            .env_remove("GITHUB_REPOSITORY")
            .env_remove("GITHUB_API_URL")
            .env("RUST_BACKTRACE", "0");
        if let Some(token) = token {
            command.env("GITHUB_TOKEN", token);
        }
        command.output().expect("xtask runs")
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The commit an (annotated) tag points to in `repo`, if any.
fn tag_commit(repo: &Path, tag: &str) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args([
            "rev-parse",
            "--quiet",
            "--verify",
            &format!("refs/tags/{tag}^{{commit}}"),
        ])
        .output()
        .expect("git runs");
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn posts(fake: &FakeGitHub) -> usize {
    fake.seen()
        .iter()
        .filter(|s| s.method == "POST" && s.path == "/repos/akidb/akidb-candle/releases")
        .count()
}

#[test]
fn tags_pushes_and_releases_then_a_rerun_changes_nothing() {
    let fixture = Fixture::new();
    let fake = FakeGitHub::serve_to(REPOSITORY, TOKEN);
    let head = fixture.head();

    let first = fixture.release(&fake.url(), Some(TOKEN), &[]);
    assert!(first.status.success(), "{}", text(&first));
    // An annotated tag at HEAD, here and on the remote.
    assert_eq!(git(&fixture.work, &["cat-file", "-t", "v2.0.0"]), "tag");
    assert_eq!(
        tag_commit(&fixture.work, "v2.0.0").as_deref(),
        Some(head.as_str())
    );
    assert_eq!(
        tag_commit(&fixture.bare, "v2.0.0").as_deref(),
        Some(head.as_str())
    );
    assert_eq!(git(&fixture.bare, &["cat-file", "-t", "v2.0.0"]), "tag");
    // One release, with the notes as its body, at the tag.
    let releases = fake.releases();
    assert_eq!(releases.len(), 1, "{releases:?}");
    assert_eq!(releases[0]["tag_name"], "v2.0.0");
    assert_eq!(releases[0]["body"], NOTES);
    assert_eq!(releases[0]["name"], "GA Release");
    assert_eq!(releases[0]["target_commitish"], head.as_str());
    assert_eq!(posts(&fake), 1);
    assert!(
        !text(&first).contains(TOKEN),
        "the token must never be printed"
    );

    let again = fixture.release(&fake.url(), Some(TOKEN), &[]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("already at"), "{}", text(&again));
    assert!(
        text(&again).contains("release of v2.0.0 exists"),
        "{}",
        text(&again)
    );
    assert_eq!(fake.releases().len(), 1);
    assert_eq!(posts(&fake), 1, "a re-run creates no second release");
}

#[test]
fn the_ga_tag_starts_the_release_workflow_with_a_dispatch_on_the_tag() {
    let fixture = Fixture::new();
    let fake = FakeGitHub::serve_to(REPOSITORY, TOKEN);
    let out = fixture.release(&fake.url(), Some(TOKEN), &["--dispatch", "release.yml"]);
    assert!(out.status.success(), "{}", text(&out));
    // A tag pushed with the workflow's token starts nothing on GitHub; this request does.
    let dispatches = fake.dispatches();
    assert_eq!(dispatches.len(), 1, "{dispatches:?}");
    assert_eq!(dispatches[0].0, "release.yml");
    assert_eq!(dispatches[0].1["ref"], "refs/tags/v2.0.0");
    assert!(
        text(&out).contains("started release.yml on v2.0.0"),
        "{}",
        text(&out)
    );
    let seen = fake.seen();
    let release_made = seen
        .iter()
        .position(|s| s.method == "POST" && s.path.ends_with("/releases"));
    let dispatched = seen.iter().position(|s| s.path.ends_with("/dispatches"));
    assert!(
        release_made < dispatched,
        "the release exists first: {seen:?}"
    );
    // Without --dispatch, nothing is started.
    let fixture = Fixture::new();
    let fake = FakeGitHub::serve_to(REPOSITORY, TOKEN);
    let out = fixture.release(&fake.url(), Some(TOKEN), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(fake.dispatches().is_empty());
}

#[test]
fn a_lost_local_tag_is_recreated_and_the_release_reused() {
    let fixture = Fixture::new();
    let fake = FakeGitHub::serve_to(REPOSITORY, TOKEN);
    // A fresh clone of the runner has no local tag; the remote and GitHub have both.
    let first = fixture.release(&fake.url(), Some(TOKEN), &[]);
    assert!(first.status.success(), "{}", text(&first));
    git(&fixture.work, &["tag", "--delete", "v2.0.0"]);
    let again = fixture.release(&fake.url(), Some(TOKEN), &[]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("remote origin already has v2.0.0"),
        "{}",
        text(&again)
    );
    assert_eq!(tag_commit(&fixture.work, "v2.0.0"), Some(fixture.head()));
    assert_eq!(fake.releases().len(), 1);
    assert_eq!(posts(&fake), 1);
}

#[test]
fn a_release_created_meanwhile_is_reused_after_githubs_422() {
    let fixture = Fixture::new();
    let fake = FakeGitHub::serve_to(REPOSITORY, TOKEN);
    fake.race_on("v2.0.0");
    let output = fixture.release(&fake.url(), Some(TOKEN), &[]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("release of v2.0.0 exists"),
        "{}",
        text(&output)
    );
    let releases = fake.releases();
    assert_eq!(releases.len(), 1, "{releases:?}");
    assert_eq!(releases[0]["name"], "made by another writer");
    // Our create was refused with 422, then the release was read back.
    let creates: Vec<u16> = fake
        .seen()
        .iter()
        .filter(|s| s.method == "POST")
        .map(|s| s.status)
        .collect();
    assert_eq!(creates, [422]);
}

#[test]
fn a_tag_at_another_commit_is_refused() {
    let fixture = Fixture::new();
    let fake = FakeGitHub::serve_to(REPOSITORY, TOKEN);
    let first = fixture.release(&fake.url(), Some(TOKEN), &[]);
    assert!(first.status.success(), "{}", text(&first));
    let tagged = fixture.head();
    let newer = fixture.commit("later.txt");
    let refused = fixture.release(&fake.url(), Some(TOKEN), &[]);
    assert!(!refused.status.success(), "{}", text(&refused));
    let message = text(&refused);
    assert!(
        message.contains(&format!(
            "tag v2.0.0 already exists at {tagged}, not at HEAD {newer}"
        )),
        "{message}"
    );
    assert_eq!(
        tag_commit(&fixture.bare, "v2.0.0").as_deref(),
        Some(tagged.as_str())
    );
    assert_eq!(posts(&fake), 1);
}

#[test]
fn the_remote_tag_at_another_commit_is_refused() {
    let fixture = Fixture::new();
    let fake = FakeGitHub::serve_to(REPOSITORY, TOKEN);
    let old = fixture.head();
    git(&fixture.work, &["tag", "-a", "-m", "old", "v2.0.0", &old]);
    git(&fixture.work, &["push", "--quiet", "origin", "v2.0.0"]);
    git(&fixture.work, &["tag", "--delete", "v2.0.0"]);
    fixture.commit("newer.txt");
    let refused = fixture.release(&fake.url(), Some(TOKEN), &[]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("remote origin has tag v2.0.0 at"),
        "{}",
        text(&refused)
    );
    assert!(fake.releases().is_empty());
}

#[test]
fn a_missing_token_is_a_clear_error_before_anything_changes() {
    let fixture = Fixture::new();
    let fake = FakeGitHub::serve_to(REPOSITORY, TOKEN);
    let output = fixture.release(&fake.url(), None, &[]);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("GITHUB_TOKEN is not set"),
        "{}",
        text(&output)
    );
    assert_eq!(tag_commit(&fixture.work, "v2.0.0"), None);
    assert_eq!(tag_commit(&fixture.bare, "v2.0.0"), None);
    assert!(fake.seen().is_empty());
}

#[test]
fn a_wrong_token_and_an_unknown_repository_are_githubs_errors() {
    let fixture = Fixture::new();
    let fake = FakeGitHub::serve_to(REPOSITORY, TOKEN);
    let wrong = fixture.release(&fake.url(), Some("ghs_wrong"), &[]);
    assert!(!wrong.status.success());
    assert!(text(&wrong).contains("401"), "{}", text(&wrong));
    assert!(text(&wrong).contains("Bad credentials"), "{}", text(&wrong));
    assert!(!text(&wrong).contains("ghs_wrong"), "{}", text(&wrong));
    assert!(
        fake.seen().iter().all(|s| s.status == 401),
        "{:?}",
        fake.seen()
    );

    let unknown = fixture.release_in("akidb/no-such-repo", &fake.url(), Some(TOKEN), &[]);
    assert!(!unknown.status.success());
    assert!(text(&unknown).contains("404"), "{}", text(&unknown));
    assert!(fake.releases().is_empty());
}

#[test]
fn dry_run_changes_nothing() {
    let fixture = Fixture::new();
    let fake = FakeGitHub::serve_to(REPOSITORY, TOKEN);
    let output = fixture.release(&fake.url(), Some(TOKEN), &["--dry-run"]);
    assert!(output.status.success(), "{}", text(&output));
    let said = text(&output);
    assert!(said.contains("would create annotated tag v2.0.0"), "{said}");
    assert!(said.contains("would push v2.0.0 to origin"), "{said}");
    assert!(
        said.contains("would create the GitHub release of v2.0.0"),
        "{said}"
    );
    assert_eq!(tag_commit(&fixture.work, "v2.0.0"), None);
    assert_eq!(tag_commit(&fixture.bare, "v2.0.0"), None);
    assert!(fake.releases().is_empty());
    assert!(fake.seen().iter().all(|s| s.method == "GET"));
}

#[test]
fn the_fake_answers_as_github_does() {
    // Without a token and with a wrong one: 401; an unknown repository: 404 (checked through
    // the release command above); here the raw protocol, with a plain HTTP client.
    let fake = FakeGitHub::serve_to(REPOSITORY, TOKEN);
    let url = format!("{}/repos/{REPOSITORY}/releases/tags/v9.9.9", fake.url());
    let anonymous = ureq::get(&url).set("User-Agent", "test").call();
    assert!(matches!(anonymous, Err(ureq::Error::Status(401, _))));
    let wrong = ureq::get(&url)
        .set("Authorization", "Bearer ghs_wrong")
        .call();
    assert!(matches!(wrong, Err(ureq::Error::Status(401, _))));
    let missing = ureq::get(&url)
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .call();
    assert!(matches!(missing, Err(ureq::Error::Status(404, _))));
    let other_repo = format!("{}/repos/akidb/other/releases/tags/v1", fake.url());
    let unknown = ureq::get(&other_repo)
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .call();
    assert!(matches!(unknown, Err(ureq::Error::Status(404, _))));
    let create = format!("{}/repos/{REPOSITORY}/releases", fake.url());
    let bad = ureq::post(&create)
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .send_json(serde_json::json!({ "tag_name": "v1", "draft": "no" }));
    match bad {
        Err(ureq::Error::Status(422, response)) => {
            let body: serde_json::Value = response.into_json().expect("JSON");
            assert_eq!(body["errors"][0]["field"], "draft");
        }
        other => panic!("expected 422, got {other:?}"),
    }
    let made = ureq::post(&create)
        .set("Authorization", &format!("token {TOKEN}"))
        .send_json(serde_json::json!({ "tag_name": "v1" }));
    assert!(matches!(made, Ok(ref r) if r.status() == 201));
    let again = ureq::post(&create)
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .send_json(serde_json::json!({ "tag_name": "v1" }));
    match again {
        Err(ureq::Error::Status(422, response)) => {
            let body: serde_json::Value = response.into_json().expect("JSON");
            assert_eq!(body["message"], "Validation Failed");
            assert_eq!(body["errors"][0]["code"], "already_exists");
        }
        other => panic!("expected 422, got {other:?}"),
    }
}

/// `cargo xtask release publish` with `token` as GITHUB_TOKEN.
fn publish(api: &str, assets: &Path, notes: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["release", "publish", "--tag", "v2.0.0", "--api-url", api])
        .args(["--repository", REPOSITORY])
        .arg("--assets")
        .arg(assets)
        .arg("--notes")
        .arg(notes)
        .env("GITHUB_TOKEN", TOKEN)
        .env_remove("GITHUB_REPOSITORY")
        .env_remove("GITHUB_API_URL")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("xtask runs")
}

/// An archive and its `.sha256` as cargo-dist writes them.
fn archive(dir: &Path, name: &str, bytes: &[u8]) -> String {
    use sha2::Digest;
    let sha256 = hex::encode(sha2::Sha256::digest(bytes));
    std::fs::write(dir.join(name), bytes).expect("archive");
    std::fs::write(
        dir.join(format!("{name}.sha256")),
        format!("{sha256}  {name}\n"),
    )
    .expect("checksum");
    sha256
}

#[test]
fn publish_attaches_each_checked_archive_its_checksum_and_the_sum_and_a_rerun_replaces_them() {
    let fake = FakeGitHub::serve_to(REPOSITORY, TOKEN);
    let dir = tempfile::tempdir().expect("temp dir");
    let notes = dir.path().join("RELEASE_NOTES.md");
    std::fs::write(&notes, NOTES).expect("notes");
    let assets = dir.path().join("distrib");
    std::fs::create_dir_all(&assets).expect("mkdir");
    let x86 = "akidb-embed-x86_64-unknown-linux-gnu.tar.xz";
    let arm = "akidb-embed-aarch64-unknown-linux-gnu.tar.xz";
    let x86_sum = archive(&assets, x86, b"x86_64 archive");
    let arm_sum = archive(&assets, arm, b"aarch64 archive");

    let output = publish(&fake.url(), &assets, &notes);
    assert!(output.status.success(), "{}", text(&output));
    let releases = fake.releases();
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0]["tag_name"], "v2.0.0");
    assert_eq!(releases[0]["body"], NOTES);
    let held = |fake: &FakeGitHub| {
        let mut names: Vec<(String, Vec<u8>)> = fake
            .assets()
            .into_iter()
            .map(|asset| (asset.name, asset.bytes))
            .collect();
        names.sort();
        names
    };
    let sum = format!("{arm_sum}  {arm}\n{x86_sum}  {x86}\n");
    let want = vec![
        (arm.to_owned(), b"aarch64 archive".to_vec()),
        (
            format!("{arm}.sha256"),
            format!("{arm_sum}  {arm}\n").into_bytes(),
        ),
        (x86.to_owned(), b"x86_64 archive".to_vec()),
        (
            format!("{x86}.sha256"),
            format!("{x86_sum}  {x86}\n").into_bytes(),
        ),
        ("sha256.sum".to_owned(), sum.into_bytes()),
    ];
    assert_eq!(held(&fake), want);

    // A rerun (a re-run job) reuses the release and replaces each asset: no duplicate.
    let output = publish(&fake.url(), &assets, &notes);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("exists"), "{}", text(&output));
    assert_eq!(held(&fake), want);
    assert_eq!(posts(&fake), 1, "one release created");

    // An archive that no longer matches its checksum: refused before anything is sent.
    std::fs::write(assets.join(x86), b"tampered").expect("tamper");
    let before = fake.seen().len();
    let output = publish(&fake.url(), &assets, &notes);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("but the archive's sha256 is"),
        "{}",
        text(&output)
    );
    assert_eq!(fake.seen().len(), before, "nothing reached GitHub");
}
