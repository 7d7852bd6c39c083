#include "csrc/data/dataset.h"

#include "core/error.h"

namespace lightring::data {

const char* known_formats() {
  return "synthetic-recall, fortunes, text, tokens, megatron";
}

Dataset open_dataset(const DataOptions& o) {
  LR_CHECK(o.seq_len >= 1, "--seq-len must be >= 1 (got ", o.seq_len, ")");
  Dataset ds;
  if (o.format == "synthetic-recall") {
    RecallConfig c = o.recall;
    c.seq_len = o.seq_len;
    c.seed = o.seed;
    ds.train = std::make_unique<RecallSource>(c, false);
    if (c.num_validation > 0) ds.validation = std::make_unique<RecallSource>(c, true);
    ds.vocab_size = c.vocab_size();
    ds.description = "synthetic-recall";
    return ds;
  }
  std::shared_ptr<const DocumentSource> docs;
  if (o.format == "fortunes") {
    docs = open_fortunes(o.path.empty() ? kFortunesDir : o.path);
  } else if (o.format == "text") {
    docs = open_text(o.path, o.text_split);
  } else if (o.format == "tokens") {
    LR_CHECK(o.eos.has_value(), "token files need the EOS id that separates documents");
    TokenFileOptions t;
    t.dtype = o.token_dtype;
    t.eos = *o.eos;
    t.vocab_size = o.vocab_size;
    docs = std::make_shared<TokenFileCorpus>(o.path, t);
  } else if (o.format == "megatron") {
    MegatronOptions m;
    m.eos = o.eos;
    m.vocab_size = o.vocab_size;
    docs = std::make_shared<MegatronCorpus>(o.path, m);
  } else {
    LR_THROW("unknown data format '", o.format, "' (known: ", known_formats(), ")");
  }
  DocumentSplit split =
      split_documents(docs->num_documents(), o.validation, o.seed, docs->describe().c_str());
  PackingOptions train{o.seq_len, o.seed, true};
  ds.train = std::make_unique<DocumentPacker>(docs, std::move(split.train), train);
  if (!split.validation.empty()) {
    PackingOptions val{o.seq_len, o.seed, false};
    ds.validation = std::make_unique<DocumentPacker>(docs, std::move(split.validation), val);
  }
  ds.vocab_size = docs->vocab_size();
  ds.eos = docs->eos();
  ds.description = docs->describe();
  ds.documents = std::move(docs);
  return ds;
}

}  // namespace lightring::data
