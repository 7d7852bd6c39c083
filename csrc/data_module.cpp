// lightring._C's data functions: the C++ data pipeline of lightring-train (csrc/data:
// open_dataset, ShardedLoader) for Python, so that `python -m lightring.train` reads exactly
// the sequences lightring-train reads (one implementation). CPython API, as module.cpp.
//
//   h = data_open(format, path, seq_len, seed, dp_rank, dp_size, val_fraction=0.01,
//                 text_split="file", token_dtype="uint16", eos=-1, vocab=0,
//                 recall_keys=64, recall_pairs=16, recall_queries=16)   -> capsule
//   data_info(h)          -> dict(vocab_size, eos, description, documents,
//                                 train_sequences, validation_sequences)
//   data_next(h, batch)   -> this DP rank's next `batch` sequences (ShardedLoader::next_batch)
//   data_validation(h, i) -> validation sequence i
//   data_position(h)      -> (epoch, sequence); data_seek(h, epoch, sequence)
//
// A sequence is a tuple of bytes (int32 native order): (input_ids, target_ids, cu_seqlens,
// answer_positions, answer_key_positions); lightring/data.py turns them into tensors.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "csrc/data/dataset.h"
#include "csrc/data/loader.h"

namespace data = lightring::data;

namespace {

constexpr const char* kCapsule = "lightring.data.Pipeline";

struct Pipeline {
  data::Dataset dataset;
  std::unique_ptr<data::ShardedLoader> loader;
};

template <typename F>
PyObject* guarded(F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_ValueError, e.what());
    return nullptr;
  }
}

void destroy(PyObject* capsule) {
  delete static_cast<Pipeline*>(PyCapsule_GetPointer(capsule, kCapsule));
}

Pipeline* pipeline_of(PyObject* capsule) {
  return static_cast<Pipeline*>(PyCapsule_GetPointer(capsule, kCapsule));
}

PyObject* int32_bytes(const std::vector<int32_t>& v) {
  return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(v.data()),
                                   static_cast<Py_ssize_t>(v.size() * sizeof(int32_t)));
}

PyObject* sequence_tuple(const data::Sequence& s) {
  return Py_BuildValue("(NNNNN)", int32_bytes(s.input_ids), int32_bytes(s.target_ids),
                       int32_bytes(s.cu_seqlens), int32_bytes(s.answer_positions),
                       int32_bytes(s.answer_key_positions));
}

PyObject* py_data_open(PyObject*, PyObject* args, PyObject* kwargs) {
  static const char* names[] = {
      "format",  "path",         "seq_len",      "seed",           "dp_rank",
      "dp_size", "val_fraction", "text_split",   "token_dtype",    "eos",
      "vocab",   "recall_keys",  "recall_pairs", "recall_queries", nullptr};
  const char* format = nullptr;
  const char* path = nullptr;
  const char* text_split = "file";
  const char* token_dtype = "uint16";
  long long seq_len = 0, eos = -1, vocab = 0;
  unsigned long long seed = 0;
  int dp_rank = 0, dp_size = 1, recall_keys = 64, recall_pairs = 16, recall_queries = 16;
  double val_fraction = 0.01;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ssLKii|dssLLiii", const_cast<char**>(names),
                                   &format, &path, &seq_len, &seed, &dp_rank, &dp_size,
                                   &val_fraction, &text_split, &token_dtype, &eos, &vocab,
                                   &recall_keys, &recall_pairs, &recall_queries))
    return nullptr;
  return guarded([&]() -> PyObject* {
    data::DataOptions o;
    o.format = format;
    o.path = path;
    o.seq_len = seq_len;
    o.seed = seed;
    LR_CHECK(val_fraction >= 0 && val_fraction < 1, "val_fraction must be in [0, 1) (got ",
             val_fraction, ")");
    o.validation = data::ValidationSpec{val_fraction, 0};
    const std::string split = text_split, dtype = token_dtype;
    LR_CHECK(split == "file" || split == "block", "text_split must be file or block (got '", split,
             "')");
    o.text_split = split == "file" ? data::TextSplit::kFile : data::TextSplit::kBlock;
    LR_CHECK(dtype == "uint16" || dtype == "uint32", "token_dtype must be uint16 or uint32 (got '",
             dtype, "')");
    o.token_dtype = dtype == "uint16" ? data::TokenDtype::kUint16 : data::TokenDtype::kUint32;
    LR_CHECK(eos >= -1 && eos <= 0xffffffffLL, "eos must be a token id >= 0, or -1 (got ", eos,
             ")");
    if (eos >= 0) o.eos = static_cast<data::Token>(eos);
    LR_CHECK(vocab >= 0 && vocab <= 0xffffffffLL, "vocab must be >= 0 (got ", vocab, ")");
    o.vocab_size = static_cast<uint32_t>(vocab);
    o.recall.num_keys = o.recall.num_values = recall_keys;
    o.recall.num_pairs = recall_pairs;
    o.recall.num_queries = recall_queries;
    auto p = std::make_unique<Pipeline>();
    p->dataset = data::open_dataset(o);
    p->loader = std::make_unique<data::ShardedLoader>(*p->dataset.train, dp_rank, dp_size);
    PyObject* capsule = PyCapsule_New(p.get(), kCapsule, destroy);
    if (capsule != nullptr) p.release();
    return capsule;
  });
}

PyObject* py_data_info(PyObject*, PyObject* args) {
  PyObject* h = nullptr;
  if (!PyArg_ParseTuple(args, "O", &h)) return nullptr;
  Pipeline* p = pipeline_of(h);
  if (p == nullptr) return nullptr;
  const data::Dataset& d = p->dataset;
  PyObject* eos = nullptr;
  if (d.eos) {
    eos = PyLong_FromUnsignedLong(*d.eos);
  } else {
    Py_INCREF(Py_None);
    eos = Py_None;
  }
  return Py_BuildValue(
      "{s:k,s:N,s:s,s:O,s:K,s:K}", "vocab_size", static_cast<unsigned long>(d.vocab_size), "eos",
      eos, "description", d.description.c_str(), "documents", d.documents ? Py_True : Py_False,
      "train_sequences", static_cast<unsigned long long>(d.train->sequences_per_epoch()),
      "validation_sequences",
      static_cast<unsigned long long>(d.validation ? d.validation->sequences_per_epoch() : 0));
}

PyObject* py_data_next(PyObject*, PyObject* args) {
  PyObject* h = nullptr;
  int batch = 0;
  if (!PyArg_ParseTuple(args, "Oi", &h, &batch)) return nullptr;
  Pipeline* p = pipeline_of(h);
  if (p == nullptr) return nullptr;
  return guarded([&]() -> PyObject* {
    const std::vector<data::Sequence> seqs = p->loader->next_batch(batch);
    PyObject* list = PyList_New(static_cast<Py_ssize_t>(seqs.size()));
    if (list == nullptr) return nullptr;
    for (size_t i = 0; i < seqs.size(); ++i) {
      PyObject* item = sequence_tuple(seqs[i]);
      if (item == nullptr) {
        Py_DECREF(list);
        return nullptr;
      }
      PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), item);
    }
    return list;
  });
}

PyObject* py_data_validation(PyObject*, PyObject* args) {
  PyObject* h = nullptr;
  unsigned long long index = 0;
  if (!PyArg_ParseTuple(args, "OK", &h, &index)) return nullptr;
  Pipeline* p = pipeline_of(h);
  if (p == nullptr) return nullptr;
  return guarded([&]() -> PyObject* {
    data::SequenceSource* val = p->dataset.validation.get();
    LR_CHECK(val != nullptr, "this dataset holds nothing out for validation");
    LR_CHECK(index < val->sequences_per_epoch(), "validation sequence ", index, " of ",
             val->sequences_per_epoch());
    data::Sequence s;
    val->sequence(0, index, s);
    return sequence_tuple(s);
  });
}

PyObject* py_data_position(PyObject*, PyObject* args) {
  PyObject* h = nullptr;
  if (!PyArg_ParseTuple(args, "O", &h)) return nullptr;
  Pipeline* p = pipeline_of(h);
  if (p == nullptr) return nullptr;
  const data::Position pos = p->loader->position();
  return Py_BuildValue("(KK)", static_cast<unsigned long long>(pos.epoch),
                       static_cast<unsigned long long>(pos.sequence));
}

PyObject* py_data_seek(PyObject*, PyObject* args) {
  PyObject* h = nullptr;
  unsigned long long epoch = 0, sequence = 0;
  if (!PyArg_ParseTuple(args, "OKK", &h, &epoch, &sequence)) return nullptr;
  Pipeline* p = pipeline_of(h);
  if (p == nullptr) return nullptr;
  return guarded([&]() -> PyObject* {
    p->loader->seek(data::Position{epoch, sequence});
    Py_RETURN_NONE;
  });
}

PyMethodDef kDataMethods[] = {
    {"data_open", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(py_data_open)),
     METH_VARARGS | METH_KEYWORDS,
     "data_open(format, path, seq_len, seed, dp_rank, dp_size, **options) -> handle: "
     "lightring-train's dataset (csrc/data/dataset.h) and this DP rank's loader."},
    {"data_info", py_data_info, METH_VARARGS, "data_info(handle) -> dict"},
    {"data_next", py_data_next, METH_VARARGS,
     "data_next(handle, batch) -> [(input_ids, target_ids, cu_seqlens, answer_positions, "
     "answer_key_positions)] as int32 bytes: this DP rank's next batch."},
    {"data_validation", py_data_validation, METH_VARARGS,
     "data_validation(handle, index) -> one validation sequence (as data_next's items)."},
    {"data_position", py_data_position, METH_VARARGS,
     "data_position(handle) -> (epoch, sequence) of the next batch row."},
    {"data_seek", py_data_seek, METH_VARARGS, "data_seek(handle, epoch, sequence)"},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

// Called by PyInit__C (module.cpp).
int lightring_add_data_functions(PyObject* module) {
  return PyModule_AddFunctions(module, kDataMethods);
}
