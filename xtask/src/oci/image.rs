//! `image_push`: push a container image from an OCI image layout or oci-archive to a
//! registry, byte for byte, so the pushed manifest digest is the layout's. Blobs the
//! repository already holds are skipped; an image index is pushed with its manifests.

use std::{future::Future, path::Path, pin::Pin};

use oci_client::{
    manifest::{IMAGE_MANIFEST_LIST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE},
    Reference,
};

use super::{
    error::OciError,
    layout::{Descriptor, Index, Layout, Manifest},
    reference::image_reference,
    session::{self, Session},
    PushOptions, Pushed,
};

/// Pushes the image in `layout` (a folder or an oci-archive file) as `image`
/// (`HOST/NAME:TAG`). Returns the manifest digest the registry stores.
pub fn push_image(layout: &Path, image: &str, options: &PushOptions) -> Result<Pushed, OciError> {
    let target = image_reference(image)?;
    push_image_to(layout, &target, options)
}

/// [`push_image`] to a parsed reference (see [`super::image_in_registry`] for plan steps).
pub fn push_image_to(
    layout: &Path,
    target: &Reference,
    options: &PushOptions,
) -> Result<Pushed, OciError> {
    let layout = Layout::open(layout)?;
    let top = layout.top(target.tag())?;
    let runtime = session::runtime()?;
    let digest = runtime.block_on(async {
        let session = Session::new(target, options)?;
        push_tree(&session, &layout, target, &top).await
    })?;
    if let Some(wanted) = target.digest() {
        if wanted != digest {
            return Err(OciError::Reference {
                input: target.to_string(),
                reason: format!("the layout's manifest is {digest}"),
            });
        }
    }
    Ok(Pushed {
        reference: target.to_string(),
        digest,
    })
}

fn is_index(media_type: &str) -> bool {
    media_type == OCI_IMAGE_INDEX_MEDIA_TYPE || media_type == IMAGE_MANIFEST_LIST_MEDIA_TYPE
}

/// Pushes the blobs `descriptor` needs, then the manifest itself as `target`. An index's
/// manifests go first, by digest.
fn push_tree<'a>(
    session: &'a Session,
    layout: &'a Layout,
    target: &'a Reference,
    descriptor: &'a Descriptor,
) -> Pin<Box<dyn Future<Output = Result<String, OciError>> + 'a>> {
    Box::pin(async move {
        let body = layout.blob(descriptor)?;
        if is_index(&descriptor.media_type) {
            let index: Index = layout.parse(descriptor, &body)?;
            for child in &index.manifests {
                let by_digest = Reference::with_digest(
                    target.registry().to_string(),
                    target.repository().to_string(),
                    child.digest.clone(),
                );
                push_tree(session, layout, &by_digest, child).await?;
            }
        } else {
            let manifest: Manifest = layout.parse(descriptor, &body)?;
            for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
                let data = layout.blob(blob)?;
                session.push_blob(target, data, &blob.digest).await?;
            }
        }
        session
            .push_manifest(target, body, &descriptor.media_type)
            .await
    })
}
