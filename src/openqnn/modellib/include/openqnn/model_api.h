/* openqnn/model_api.h: the C ABI between an openqnn model library and the runtime that loads it.
 *
 * A model library (qnn-model-lib-generator) is the converter's <stem>.cpp compiled into a shared
 * library. The runtime opens it, checks openqnn_model_abi_version() against the version it speaks, and
 * calls openqnn_compose() with a table of callbacks; the library declares every tensor and every node
 * of its graph through them, in order. Nothing else crosses the boundary: the runtime builds its graph
 * from these calls and verifies it as it verifies a _net.json.
 *
 * Strings are NUL-terminated UTF-8 and only read during the call. Every callback returns 0 on success;
 * on failure it returns non-zero (the runtime keeps the reason) and the library returns that value from
 * openqnn_compose() at once.
 *
 *   tensor types    QNN's tensor types (QNN_TENSOR_TYPE_*): "APP_WRITE" (an input), "APP_READ" (an
 *                   output), "NATIVE" (an intermediate), "STATIC" (weights)
 *   data types      QNN's: "QNN_DATATYPE_FLOAT_32", "QNN_DATATYPE_UFIXED_POINT_8", ...
 *   quantization    QNN's quant_params as a JSON object, the converter's _net.json field, e.g.
 *                   {"definition": "QNN_DEFINITION_DEFINED", "encoding":
 *                    "QNN_QUANTIZATION_ENCODING_SCALE_OFFSET", "bitwidth": 8,
 *                    "scale_offset": {"scale": 0.0235, "offset": 0}, ...}; "" for a float tensor
 *   layouts         {"src_axis_format": "NCHW", "axis_format": "NHWC"} (either may be left out), or ""
 *   weights         a static tensor's data: (offset, size) in bytes into the model's weights (<stem>.bin,
 *                   embedded in the library or beside it); OPENQNN_NO_DATA for every other tensor
 *   node params     {"scalar_params": {"group": 1}, "tensor_params": {"stride": {"dims": [2],
 *                   "data": [1, 1], "data_type": "QNN_DATATYPE_INT_32"}}}, as in the _net.json
 */
#ifndef OPENQNN_MODEL_API_H
#define OPENQNN_MODEL_API_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OPENQNN_MODEL_ABI_VERSION 1u
#define OPENQNN_NO_DATA UINT64_MAX, 0u

#if defined(_WIN32)
#define OPENQNN_EXPORT __declspec(dllexport)
#else
#define OPENQNN_EXPORT __attribute__((visibility("default")))
#endif

typedef struct OpenqnnModelApi {
  uint32_t abi_version; /* the OPENQNN_MODEL_ABI_VERSION the runtime speaks */
  void* ctx;            /* handed back to every callback */
  int32_t (*begin_graph)(void* ctx, const char* name, const char* metadata_json);
  int32_t (*add_tensor)(void* ctx, const char* name, const char* type, const char* data_type, uint32_t rank,
                        const uint32_t* dims, const char* quant_params_json, const char* layouts_json,
                        uint64_t data_offset, uint64_t data_size);
  int32_t (*add_node)(void* ctx, const char* name, const char* package, const char* type, uint32_t num_inputs,
                      const char* const* inputs, uint32_t num_outputs, const char* const* outputs,
                      const char* params_json);
  int32_t (*set_graph_io)(void* ctx, uint32_t num_inputs, const char* const* inputs, uint32_t num_outputs,
                          const char* const* outputs);
} OpenqnnModelApi;

/* What a model library exports (the <stem>.cpp defines openqnn_compose; qnn-model-lib-generator adds the
 * rest): */
OPENQNN_EXPORT uint32_t openqnn_model_abi_version(void);
OPENQNN_EXPORT const char* openqnn_model_info(void); /* JSON: name, target, weights, openqnn version */
OPENQNN_EXPORT const void* openqnn_model_weights(uint64_t* size); /* NULL: the weights file is beside */
OPENQNN_EXPORT int32_t openqnn_compose(const OpenqnnModelApi* api);

#ifdef __cplusplus
} /* extern "C" */

#include <initializer_list>

namespace openqnn {

/* A thin C++ helper over the table, so that the generated source reads one line per tensor and node
 * (header-only: a library needs no C++ runtime library). */
class Model {
 public:
  explicit Model(const OpenqnnModelApi* api) : api_(api) {}
  int32_t status() const { return status_; }

  void graph(const char* name, const char* metadata_json) {
    if (!status_) status_ = api_->begin_graph(api_->ctx, name, metadata_json);
  }
  void tensor(const char* name, const char* type, const char* data_type, std::initializer_list<uint32_t> dims,
              const char* quant_params_json, const char* layouts_json, uint64_t data_offset, uint64_t data_size) {
    if (status_) return;
    status_ = api_->add_tensor(api_->ctx, name, type, data_type, static_cast<uint32_t>(dims.size()), dims.begin(),
                               quant_params_json, layouts_json, data_offset, data_size);
  }
  void node(const char* name, const char* package, const char* type, std::initializer_list<const char*> inputs,
            std::initializer_list<const char*> outputs, const char* params_json) {
    if (status_) return;
    status_ = api_->add_node(api_->ctx, name, package, type, static_cast<uint32_t>(inputs.size()), inputs.begin(),
                             static_cast<uint32_t>(outputs.size()), outputs.begin(), params_json);
  }
  void io(std::initializer_list<const char*> inputs, std::initializer_list<const char*> outputs) {
    if (status_) return;
    status_ = api_->set_graph_io(api_->ctx, static_cast<uint32_t>(inputs.size()), inputs.begin(),
                                 static_cast<uint32_t>(outputs.size()), outputs.begin());
  }

 private:
  const OpenqnnModelApi* api_;
  int32_t status_ = 0;
};

}  // namespace openqnn
#endif /* __cplusplus */

#endif /* OPENQNN_MODEL_API_H */
