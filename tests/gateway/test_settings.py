from gateway.settings import Settings


def test_lists_accept_commas_and_json(monkeypatch):
    monkeypatch.setenv("VISIONRAG_UPSTREAM_URLS", "http://a:8000/v1/, http://b:8000/v1")
    monkeypatch.setenv("VISIONRAG_FETCH_ALLOW_HOSTS", '["images.internal", "cdn:8443"]')
    settings = Settings(_env_file=None)
    assert settings.upstream_urls == ["http://a:8000/v1", "http://b:8000/v1"]
    assert settings.fetch_allow_hosts == ["images.internal", "cdn:8443"]


def test_api_keys_map_to_tenants(monkeypatch):
    monkeypatch.setenv("VISIONRAG_API_KEYS", "acme:sk-acme,sk-anon")
    tenants = Settings(_env_file=None).tenants_by_key
    assert tenants["sk-acme"] == "acme"
    assert tenants["sk-anon"].startswith("key-") and len(tenants) == 2


def test_dotenv_file_is_read(tmp_path, monkeypatch):
    monkeypatch.delenv("VISIONRAG_MAX_IMAGES_PER_REQUEST", raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("VISIONRAG_MAX_IMAGES_PER_REQUEST=3\n")
    assert Settings(_env_file=env_file).max_images_per_request == 3
