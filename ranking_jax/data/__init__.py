"""Data: tfds builders (array_record, no TensorFlow), ranking lists, grain pipelines, tokenization, BM25.

    builder = data.prepare(data.Beir, config="scifact", data_dir=D, manual_dir=M)   # once
    src = builder.as_data_source()          # corpus / queries / train / dev / test
    qrels = data.qrels_from_split(src["test"]); rows = list(qrels)          # query_index -> judgments
    top, _ = data.BM25().index(data.texts(src["corpus"])).search(data.Texts(src["queries"])[rows], k=100)
    records = data.eval_lists(qrels, data.candidates_from_search(rows, top), list_size=100)
    batches = data.text_pipeline(records, family="cross_encoder", queries=data.Texts(src["queries"]),
                                 corpus=data.Texts(src["corpus"]), batch_size=8, list_size=100, train=False)
    it = batches.iterator(); batch = next(it); state = it.get_state()   # JSON; it.set_state(state) resumes
"""

from ranking_jax.data._tfds import find_source, prepare
from ranking_jax.data.beir import Beir, BeirConfig
from ranking_jax.data.bm25 import BM25, LUCENE_STOPWORDS, analyzer
from ranking_jax.data.encoding import bucket, encode_rows, trim_padding
from ranking_jax.data.formats import (DataFormatError, IdIndex, Skipped, ranked, read_idx, read_jsonl, read_qrels,
                                      read_qrels_lines, read_run, read_svmlight, read_tsv, write_run)
from ranking_jax.data.images import ImageClasses, ImageClassesConfig, read_fashion_mnist
from ranking_jax.data.letor import NORMALIZATIONS, Letor, LetorConfig, normalize
from ranking_jax.data.lists import (Texts, candidates_from_run, candidates_from_search, candidates_from_split,
                                    eval_lists, hard_negative_triples, id_list, ids_and_texts, qrels_from_split,
                                    sample_training_list, teacher_lists, texts, train_lists)
from ranking_jax.data.msmarco import TEACHER_COLUMNS, MsmarcoPassage, read_teacher_triples, write_teacher_triples
from ranking_jax.data.pipeline import (TEXT_FAMILIES, Batches, Pipeline, image_pipeline, letor_pipeline,
                                       letor_records, stack_lists, text_pipeline)
from ranking_jax.data.preference import Preference, PreferenceConfig, preference_pairs, preference_pipeline
from ranking_jax.data.tokenize import TextTokenizer, TokenTable

__all__ = [
    # tfds builders
    "prepare", "find_source", "Beir", "BeirConfig", "MsmarcoPassage", "Letor", "LetorConfig", "Preference",
    "PreferenceConfig", "ImageClasses", "ImageClassesConfig", "read_fashion_mnist",
    # file formats
    "DataFormatError", "IdIndex", "Skipped", "read_idx", "read_jsonl", "read_qrels", "read_qrels_lines", "read_run",
    "ranked", "read_svmlight", "read_tsv", "write_run", "read_teacher_triples", "write_teacher_triples",
    "TEACHER_COLUMNS",
    # lists
    "Texts", "texts", "id_list", "ids_and_texts", "qrels_from_split", "candidates_from_run",
    "candidates_from_search", "candidates_from_split", "eval_lists", "train_lists", "hard_negative_triples",
    "sample_training_list", "teacher_lists",
    # pipelines
    "Pipeline", "Batches", "text_pipeline", "letor_pipeline", "letor_records", "image_pipeline",
    "preference_pipeline", "preference_pairs", "stack_lists", "trim_padding", "bucket", "encode_rows",
    "TEXT_FAMILIES", "normalize", "NORMALIZATIONS",
    # tokenization, first stage
    "TextTokenizer", "TokenTable", "BM25", "analyzer", "LUCENE_STOPWORDS",
]
