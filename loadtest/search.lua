-- wrk scenario for loadtest/bench-search.sh: cycles through a fixed set of
-- product searches (single common words, word pairs, words with category and
-- price filters, paging), the same sequence in every run.
--   wrk -t2 -c16 -d15s --latency -s loadtest/search.lua http://127.0.0.1:18000
local queries = {
  "/products?q=%D0%BA%D0%BE%D1%81%D0%BC%D0%BE%D1%81", -- q=космос
  "/products?q=%D1%81%D0%B8%D0%BD%D0%B8%D0%B9%20%D1%80%D1%8E%D0%BA%D0%B7%D0%B0%D0%BA", -- q=синий рюкзак
  "/products?q=%D0%BA%D0%BE%D1%81%D0%BC%D0%BE%D1%81&category=%D0%AD%D0%BB%D0%B5%D0%BA%D1%82%D1%80%D0%BE%D0%BD%D0%B8%D0%BA%D0%B0", -- q=космос&category=Электроника
  "/products?q=%D1%87%D0%B0%D0%B9%D0%BD%D0%B8%D0%BA&minPrice=1000&maxPrice=5000", -- q=чайник&minPrice=1000&maxPrice=5000
  "/products?q=%D0%BB%D1%91%D0%B3%D0%BA%D0%B0%D1%8F%20%D0%BF%D0%B0%D0%BB%D0%B0%D1%82%D0%BA%D0%B0&limit=10", -- q=лёгкая палатка&limit=10
  "/products?q=%D0%9A%D0%BD%D0%B8%D0%B3%D0%B0%20%D0%91%D0%B0%D0%B9%D0%BA%D0%B0%D0%BB", -- q=Книга Байкал
  "/products?q=%D1%80%D0%BE%D0%B1%D0%BE%D1%82&offset=20", -- q=робот&offset=20
  "/products?q=%D0%9A%D0%9E%D0%A1%D0%9C%D0%9E%D0%A1%20%D1%81%D0%BC%D0%B0%D1%80%D1%82%D1%84%D0%BE%D0%BD", -- q=КОСМОС смартфон
}

-- SEARCH_URLS: a file of request paths, one per line (bench-search.sh writes
-- one for the original solution's data shape); replaces the fixed mix.
local file = os.getenv("SEARCH_URLS")
if file and file ~= "" then
  queries = {}
  for line in io.lines(file) do
    if line ~= "" then queries[#queries + 1] = line end
  end
end

local counter = 0

request = function()
  counter = counter + 1
  return wrk.format("GET", queries[(counter % #queries) + 1])
end

-- One machine-readable line for the script that runs wrk.
done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format(
    "BENCH requests=%d rps=%.1f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f non2xx=%d socket_errors=%d\n",
    summary.requests, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
