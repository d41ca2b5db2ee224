// feature_cache.cpp - EncoderFeatureCache.
#include "feature_cache.h"

#include "errors.h"

namespace inpformer {

EncoderFeatureCache::Entry EncoderFeatureCache::Entry::of(const EncodedImages& batch, int64_t row) {
  Entry e{batch.query[row], {}};
  for (const auto& g : batch.groups) e.groups.push_back(g[row]);
  return e;
}

EncoderFeatureCache::Entry EncoderFeatureCache::Entry::clone() const {
  Entry e{query.clone(), {}};
  for (const auto& g : groups) e.groups.push_back(g.clone());
  return e;
}

int64_t EncoderFeatureCache::Entry::bytes() const {
  int64_t n = static_cast<int64_t>(query.nbytes());
  for (const auto& g : groups) n += static_cast<int64_t>(g.nbytes());
  return n;
}

EncodedImages EncoderFeatureCache::encode(InpFormerNetImpl& net, const torch::Tensor& batch,
                                          const std::vector<int64_t>& keys, int encoderThreads,
                                          int64_t* encodedImages) {
  const auto B = batch.size(0);
  if (static_cast<int64_t>(keys.size()) != B)
    throw CoreError(codes::kInvalidArgument, "a batch of " + std::to_string(B) + " images came with " +
                                                 std::to_string(keys.size()) + " image keys");
  std::vector<int64_t> missing;
  for (int64_t i = 0; i < B; ++i)
    if (entries_.count(keys[static_cast<size_t>(i)]) == 0) missing.push_back(i);
  if (encodedImages != nullptr) *encodedImages = static_cast<int64_t>(missing.size());
  if (static_cast<int64_t>(missing.size()) == B && budget_ <= bytes_) return net.encode(batch, encoderThreads);

  // The missing images as one batch; each image's outputs are slices of it.
  std::unordered_map<int64_t, Entry> fresh;
  if (!missing.empty()) {
    const auto index = torch::tensor(missing, torch::TensorOptions().dtype(torch::kLong).device(batch.device()));
    const auto part = missing.size() == static_cast<size_t>(B) ? net.encode(batch, encoderThreads)
                                                                : net.encode(batch.index_select(0, index), encoderThreads);
    for (size_t j = 0; j < missing.size(); ++j)
      fresh.emplace(keys[static_cast<size_t>(missing[j])], Entry::of(part, static_cast<int64_t>(j)));
  }
  std::vector<const Entry*> rows;
  for (const auto key : keys) {
    auto held = entries_.find(key);
    rows.push_back(held != entries_.end() ? &held->second : &fresh.at(key));
  }
  EncodedImages out;
  std::vector<torch::Tensor> parts;
  for (const auto* r : rows) parts.push_back(r->query);
  out.query = torch::stack(parts);
  for (size_t g = 0; g < rows.front()->groups.size(); ++g) {
    parts.clear();
    for (const auto* r : rows) parts.push_back(r->groups[g]);
    out.groups.push_back(torch::stack(parts));
  }
  // Keep the fresh images the budget has room for.
  for (const auto& [key, e] : fresh) {
    const auto size = e.bytes();
    if (bytes_ + size > budget_) continue;
    entries_.emplace(key, e.clone());
    bytes_ += size;
  }
  return out;
}

}  // namespace inpformer
