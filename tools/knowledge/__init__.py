"""Knowledge retrieval: turn a query into citable evidence."""

from okaflow.tools.knowledge._retriever import BM25Retriever, CombinedRetriever, KnowledgeRetriever, Passage

__all__ = ["BM25Retriever", "CombinedRetriever", "KnowledgeRetriever", "Passage"]
