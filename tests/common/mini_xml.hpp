// A minimal XML parser for tests: checks well-formedness (one root, matching tags, quoted and
// unique attributes, only the five predefined entities and numeric character references, no
// stray '<' or '&') and returns a small tree to query. Enough for the report's SVG; no DTDs.
#pragma once

#include <cctype>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace testing {

struct XmlNode {
  std::string name;
  std::map<std::string, std::string> attrs;
  std::vector<std::unique_ptr<XmlNode>> children;
  std::string text;  // character data directly inside, entities decoded

  // Every element named `n` in this subtree (this one included).
  void find_all(const std::string& n, std::vector<const XmlNode*>& out) const {
    if (name == n) out.push_back(this);
    for (const auto& c : children) c->find_all(n, out);
  }
  std::vector<const XmlNode*> all(const std::string& n) const {
    std::vector<const XmlNode*> out;
    find_all(n, out);
    return out;
  }
  std::string attr(const std::string& k) const {
    auto it = attrs.find(k);
    return it == attrs.end() ? std::string() : it->second;
  }
};

class MiniXml {
 public:
  // Throws std::runtime_error naming the offset and the problem.
  static std::unique_ptr<XmlNode> parse(const std::string& text) {
    MiniXml p(text);
    p.skip_misc();
    if (p.at_end() || p.peek() != '<') p.fail("expected the root element");
    auto root = p.element();
    p.skip_misc();
    if (!p.at_end()) p.fail("content after the root element");
    return root;
  }

 private:
  explicit MiniXml(const std::string& s) : s_(s) {}
  const std::string& s_;
  size_t i_ = 0;

  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("XML error at offset " + std::to_string(i_) + ": " + what);
  }
  bool at_end() const { return i_ >= s_.size(); }
  char peek() const { return s_[i_]; }
  bool starts(const char* t) const {
    return s_.compare(i_, std::char_traits<char>::length(t), t) == 0;
  }
  void skip_space() {
    while (!at_end() && std::isspace(static_cast<unsigned char>(peek()))) ++i_;
  }
  void skip_until(const char* end) {
    size_t e = s_.find(end, i_);
    if (e == std::string::npos) fail(std::string("unterminated, expected ") + end);
    i_ = e + std::char_traits<char>::length(end);
  }
  // Whitespace, comments and processing instructions outside the root.
  void skip_misc() {
    for (;;) {
      skip_space();
      if (starts("<!--"))
        skip_until("-->");
      else if (starts("<?"))
        skip_until("?>");
      else
        return;
    }
  }
  static bool name_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' ||
           c == ':' || (static_cast<unsigned char>(c) >= 0x80);
  }
  std::string name() {
    size_t b = i_;
    if (at_end() ||
        !(std::isalpha(static_cast<unsigned char>(peek())) || peek() == '_' || peek() == ':'))
      fail("expected a name");
    while (!at_end() && name_char(peek())) ++i_;
    return s_.substr(b, i_ - b);
  }
  // Decodes entities in raw character data; rejects '<' and bare '&'.
  std::string decode(const std::string& raw) const {
    std::string out;
    for (size_t k = 0; k < raw.size(); ++k) {
      char c = raw[k];
      if (c == '<') throw std::runtime_error("'<' inside character data or an attribute");
      if (c != '&') {
        out += c;
        continue;
      }
      size_t semi = raw.find(';', k);
      if (semi == std::string::npos) throw std::runtime_error("'&' without ';'");
      std::string ent = raw.substr(k + 1, semi - k - 1);
      if (ent == "amp")
        out += '&';
      else if (ent == "lt")
        out += '<';
      else if (ent == "gt")
        out += '>';
      else if (ent == "quot")
        out += '"';
      else if (ent == "apos")
        out += '\'';
      else if (ent.size() > 1 && ent[0] == '#')
        out += '?';  // a character reference
      else
        throw std::runtime_error("unknown entity &" + ent + ";");
      k = semi;
    }
    return out;
  }
  std::unique_ptr<XmlNode> element() {
    ++i_;  // '<'
    auto node = std::make_unique<XmlNode>();
    node->name = name();
    for (;;) {
      size_t before = i_;
      skip_space();
      if (at_end()) fail("unterminated start tag <" + node->name);
      if (starts("/>")) {
        i_ += 2;
        return node;
      }
      if (peek() == '>') {
        ++i_;
        break;
      }
      if (i_ == before) fail("expected whitespace before an attribute");
      std::string key = name();
      skip_space();
      if (at_end() || peek() != '=') fail("attribute " + key + " without '='");
      ++i_;
      skip_space();
      if (at_end() || (peek() != '"' && peek() != '\'')) fail("attribute " + key + " not quoted");
      char q = peek();
      size_t end = s_.find(q, i_ + 1);
      if (end == std::string::npos) fail("unterminated attribute " + key);
      std::string value = decode(s_.substr(i_ + 1, end - i_ - 1));
      if (!node->attrs.emplace(key, value).second) fail("duplicate attribute " + key);
      i_ = end + 1;
    }
    // Content.
    for (;;) {
      if (at_end()) fail("missing </" + node->name + ">");
      if (starts("</")) {
        i_ += 2;
        std::string close = name();
        skip_space();
        if (at_end() || peek() != '>') fail("bad end tag");
        ++i_;
        if (close != node->name) fail("</" + close + "> closes <" + node->name + ">");
        return node;
      }
      if (starts("<!--")) {
        skip_until("-->");
      } else if (starts("<![CDATA[")) {
        size_t b = i_ + 9;
        skip_until("]]>");
        node->text += s_.substr(b, i_ - 3 - b);
      } else if (starts("<?")) {
        skip_until("?>");
      } else if (peek() == '<') {
        node->children.push_back(element());
      } else {
        size_t end = s_.find('<', i_);
        if (end == std::string::npos) fail("missing </" + node->name + ">");
        try {
          node->text += decode(s_.substr(i_, end - i_));
        } catch (const std::runtime_error& e) {
          fail(e.what());
        }
        i_ = end;
      }
    }
  }
};

}  // namespace testing
