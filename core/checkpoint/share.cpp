// Flat ranges to named pieces, and the stored keys of pieces.
#include "core/checkpoint/share.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace core::checkpoint {

bool NamedPiece::whole() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return begin == 0 && end == n;
}

std::vector<NamedPiece> named_pieces(const ParamStore& ps, ParamStore::Range flat) {
  std::vector<int> ids(ps.size());
  for (int id = 0; id < ps.size(); ++id) ids[id] = id;
  std::sort(ids.begin(), ids.end(), [&](int a, int b) { return ps.offset(a) < ps.offset(b); });
  std::vector<NamedPiece> out;
  for (int id : ids) {
    const ParamSpec& spec = ps.spec(id);
    const int64_t off = ps.offset(id), n = ps.param(id).numel();
    if (off + n <= flat.begin || off >= flat.end) continue;
    // A stacked tensor is one named tensor per slice of dim 0.
    const int64_t slices = spec.stack_first >= 0 ? spec.shape[0] : 1;
    const int64_t per = n / slices;
    std::vector<int64_t> shape = spec.shape;
    if (spec.stack_first >= 0) shape.erase(shape.begin());
    for (int64_t s = 0; s < slices; ++s) {
      const int64_t sb = off + s * per, b = std::max(sb, flat.begin),
                    e = std::min(sb + per, flat.end);
      if (b >= e) continue;
      out.push_back(
          {spec.stack_first >= 0 ? spec.slice_name(s) : spec.name, shape, b - sb, e - sb, b});
    }
  }
  return out;
}

std::vector<NamedPiece> all_tensors(const ParamStore& ps) {
  return named_pieces(ps, {0, ps.numel()});
}

std::string piece_key(const std::string& kind, const NamedPiece& p) {
  if (p.whole()) return kind + "/" + p.name;
  return kind + "/" + p.name + "/" + std::to_string(p.begin) + ":" + std::to_string(p.end);
}

ParsedKey parse_key(const std::string& key, const std::string& file) {
  ParsedKey k;
  const size_t a = key.find('/');
  const size_t b = a == std::string::npos ? a : key.find('/', a + 1);
  auto bad = [&] {
    FLOT_THROW(DataError,
               "{}: tensor key '{}' is not of the form <kind>/<name>[/<begin>:<end>]; "
               "the file is not a Flotilla checkpoint shard",
               file, key);
  };
  if (a == std::string::npos || a == 0) bad();
  k.kind = key.substr(0, a);
  k.name = key.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
  if (k.name.empty()) bad();
  if (b != std::string::npos) {
    const std::string range = key.substr(b + 1);
    const size_t colon = range.find(':');
    try {
      size_t u1 = 0, u2 = 0;
      if (colon == std::string::npos) bad();
      k.begin = std::stoll(range.substr(0, colon), &u1);
      k.end = std::stoll(range.substr(colon + 1), &u2);
      if (u1 != colon || u2 != range.size() - colon - 1 || k.begin < 0 || k.end <= k.begin) bad();
    } catch (const std::logic_error&) {
      bad();
    }
  }
  return k;
}

}  // namespace core::checkpoint
