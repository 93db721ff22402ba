"""What only the local-folder blob store does: files under the data dir, written whole. The contract it
shares with every backend is tested in test_contract.py."""

import hashlib

from gateway.journal import open_blobs
from gateway.journal.disk import DiskBlobStore
from gateway.settings import Settings


def test_open_blobs_gives_the_settings_images_folder(tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    blobs = open_blobs(settings)
    assert isinstance(blobs, DiskBlobStore) and blobs.root == settings.images_dir
    digest = blobs.put(b"picture")
    assert (settings.images_dir / digest[:2] / digest).read_bytes() == b"picture"
    assert digest == hashlib.sha256(b"picture").hexdigest()


def test_a_put_leaves_no_temporary_file(tmp_path):
    blobs = DiskBlobStore(tmp_path / "images")
    blobs.put(b"picture")
    blobs.put(b"picture")
    assert not list((tmp_path / "images").rglob("*.tmp"))
