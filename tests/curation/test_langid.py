import pyarrow as pa
import pytest

from curation.langid import LangIdConfig, LanguageId

TEXTS = {
    "en": "The package manager keeps track of every file installed on the system and removes them cleanly.",
    "fr": "Le gestionnaire de paquets garde la trace de chaque fichier installé sur le système.",
    "de": "Die Paketverwaltung merkt sich jede Datei, die auf dem System installiert wurde.",
    "ja": "パッケージ管理システムは、システムにインストールされたすべてのファイルを記録します。",
    "ru": "Менеджер пакетов отслеживает каждый файл, установленный в системе.",
}


def test_languages_of_real_handbook_pages(handbook_pages):
    from curation.extract import Extractor
    from curation.io.readers import RAW_WARC_SCHEMA

    for lang_dir, code in (("fr-FR", "fr"), ("de-DE", "de"), ("ja-JP", "ja"), ("ru-RU", "ru")):
        rows = [{"id": p.name, "url": None, "source": "t", "crawl_date": None, "content_type": "text/html",
                 "payload": p.read_bytes()} for p in handbook_pages[lang_dir][40:50]]
        docs = Extractor().run(pa.Table.from_pylist(rows, schema=RAW_WARC_SCHEMA)).kept
        result = LanguageId().run(docs)
        languages = result.kept["language"].to_pylist()
        # Untranslated handbook pages are English; most are in the directory's language.
        assert languages.count(code) >= 6, (lang_dir, languages)


def test_columns_scores_and_filters():
    table = pa.table({"id": list(TEXTS), "text": list(TEXTS.values())})
    result = LanguageId().run(table)
    assert result.kept["language"].to_pylist() == list(TEXTS)
    assert result.kept["language_score"].type == pa.float32()
    kept = LanguageId(LangIdConfig(keep_languages=("en", "ja"))).run(table)
    assert kept.kept["id"].to_pylist() == ["en", "ja"]
    assert kept.dropped_counts() == {"language_not_kept": 3}
    gibberish = pa.table({"id": ["g"], "text": ["zzq 1234 ### xk"]})
    assert LanguageId(LangIdConfig(min_score=0.95)).run(gibberish).dropped_counts() == {"language_score_low": 1}


def test_config_validation():
    with pytest.raises(ValueError, match="min_score\n  Input should be less than or equal to 1"):
        LangIdConfig(min_score=1.5)
