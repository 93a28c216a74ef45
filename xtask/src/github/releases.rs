//! The GitHub release of a tag, found when it exists and created otherwise, and the dispatch
//! that starts the release workflow.

use octocrab::{models::repos::Release, Octocrab};

use super::{status, GitHubError, Repository};

/// What the release should be.
pub struct NewRelease<'a> {
    /// The tag it publishes.
    pub tag: &'a str,
    /// The commit (the tag is pushed first; GitHub uses it only if the tag is missing).
    pub commit: &'a str,
    /// The release's title.
    pub name: &'a str,
    /// Markdown body (RELEASE_NOTES.md).
    pub body: &'a str,
}

/// How the release came to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It was created now.
    Created,
    /// It existed and was reused.
    Existing,
}

/// A repository's releases.
pub struct Releases {
    client: Octocrab,
    repository: Repository,
}

impl Releases {
    /// A client of `api_url` acting on `repository` with `token`; must be called inside a tokio
    /// runtime.
    pub fn new(api_url: &str, repository: Repository, token: String) -> Result<Self, GitHubError> {
        let client: Octocrab = super::client(api_url, token)?;
        Ok(Self { client, repository })
    }

    /// The release of `tag`, if there is one.
    pub async fn find(&self, tag: &str) -> Result<Option<Release>, GitHubError> {
        let Repository { owner, name } = &self.repository;
        match self
            .client
            .repos(owner, name)
            .releases()
            .get_by_tag(tag)
            .await
        {
            Ok(release) => Ok(Some(release)),
            Err(error) if status(&error) == Some(404) => {
                // GitHub also answers 404 for a repository the token cannot see: tell them apart.
                self.client
                    .repos(owner, name)
                    .get()
                    .await
                    .map_err(|source| GitHubError::Api {
                        what: format!("reading repository {}", self.repository),
                        source,
                    })?;
                Ok(None)
            }
            Err(source) => Err(GitHubError::Api {
                what: format!("looking up the release of {tag} in {}", self.repository),
                source,
            }),
        }
    }

    /// The release of `new.tag`: the existing one, else a new one. A 422 on creation (the tag
    /// got a release meanwhile) is answered by reading that release.
    pub async fn ensure(&self, new: &NewRelease<'_>) -> Result<(Release, Outcome), GitHubError> {
        if let Some(release) = self.find(new.tag).await? {
            return Ok((release, Outcome::Existing));
        }
        let Repository { owner, name } = &self.repository;
        let created = self
            .client
            .repos(owner, name)
            .releases()
            .create(new.tag)
            .target_commitish(new.commit)
            .name(new.name)
            .body(new.body)
            .draft(false)
            .prerelease(false)
            .send()
            .await;
        match created {
            Ok(release) => Ok((release, Outcome::Created)),
            Err(error) if status(&error) == Some(422) => match self.find(new.tag).await? {
                Some(release) => Ok((release, Outcome::Existing)),
                None => Err(GitHubError::Api {
                    what: format!("creating the release of {} in {}", new.tag, self.repository),
                    source: error,
                }),
            },
            Err(source) => Err(GitHubError::Api {
                what: format!("creating the release of {} in {}", new.tag, self.repository),
                source,
            }),
        }
    }

    /// Attaches `bytes` to `release` as the asset `file`, replacing an asset of that name (as
    /// `gh release upload --clobber`), so that a rerun converges.
    pub async fn upload(
        &self,
        release: &Release,
        file: &str,
        bytes: Vec<u8>,
    ) -> Result<(), GitHubError> {
        let Repository { owner, name } = &self.repository;
        let repo = self.client.repos(owner, name);
        let id = release.id.into_inner();
        let api = |what: String| move |source| GitHubError::Api { what, source };
        let assets = repo
            .releases()
            .assets(id)
            .per_page(100)
            .send()
            .await
            .map_err(api(format!("listing the assets of {}", release.tag_name)))?;
        for old in assets.items.iter().filter(|a| a.name == file) {
            repo.release_assets()
                .delete(old.id.into_inner())
                .await
                .map_err(api(format!(
                    "replacing asset {file} of {}",
                    release.tag_name
                )))?;
        }
        repo.releases()
            .upload_asset(id, file, bytes.into())
            .send()
            .await
            .map_err(api(format!("uploading {file} to {}", release.tag_name)))?;
        Ok(())
    }

    /// Starts `workflow` (a file of `.github/workflows/`) on `git_ref` with a
    /// `workflow_dispatch`. GitHub starts no workflow for a tag pushed with the workflow's own
    /// token, but it does run a dispatch made with it.
    pub async fn dispatch(&self, workflow: &str, git_ref: &str) -> Result<(), GitHubError> {
        let Repository { owner, name } = &self.repository;
        self.client
            .actions()
            .create_workflow_dispatch(owner, name, workflow, git_ref)
            .send()
            .await
            .map_err(|source| GitHubError::Api {
                what: format!("starting {workflow} on {git_ref} in {}", self.repository),
                source,
            })
    }
}
