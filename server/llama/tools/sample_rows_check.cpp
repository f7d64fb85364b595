// Checks ggml_sample_rows (the batched backend sampling of patches/0002) against llama.cpp's own
// CPU samplers, on every ggml device found (the CPU, and a GPU in a CUDA build), and times it.
//
//   vibe-sample-rows-check [check|bench] [--vocab N] [--draws N] [--seed N] [--sigma S]
//
// check: (1) greedy decoding: for random logit rows with ties, every device's op picks the same
//        token as the stock greedy sampler chain (temperature 0, top-k 1, or greedy);
//        (2) sampled decoding: for fixed logits, the op's token frequencies over many draws and
//        the stock chain's pass a two-sample chi-square test (p > 0.001) for each sampling
//        profile; (3) devices agree: with the same uniform draws, each other device gives the
//        CPU op's tokens (a few differences at float rounding boundaries are reported, not
//        failed, up to 0.5%).
// bench: median time of one op over R rows (1, 2, 16, 64) of a 151,936-token vocabulary, per
//        device and sampling profile; logits N(0, S^2), S = --sigma (default 3; a small S gives the
//        flat rows of a model with random weights, where top-p keeps most of the vocabulary).
//        On CUDA, GGML_CUDA_SAMPLE_ROWS_TEAM=auto or N samples each row with a cluster of blocks
//        (patches/0002; unset or 1: one block per row).
// Exit code 0 when every check passes; each line printed says what was compared.
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml.h"
#include "llama.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace {

struct profile {
    std::string name;
    int   top_k;    // 0: none
    float temp;
    float top_p;    // 1: none
    float min_p;    // 0: none
    bool  top_p_before_temp;
};

// The chains vibe-serve's profiles produce (samplers "top_k;temperature;top_p"), and llama.cpp's
// default order (top-p and min-p before temperature).
const std::vector<profile> PROFILES = {
    { "model-card (temp 0.6, top-p 0.95)",         0, 0.6f, 0.95f, 0.0f,  false },
    { "top-k cut (top-k 64, temp 0.6, top-p 0.95)", 64, 0.6f, 0.95f, 0.0f,  false },
    { "default order (top-k 40, top-p 0.9, min-p 0.05, temp 0.8)", 40, 0.8f, 0.9f, 0.05f, true },
};

llama_sampler * stock_chain(const profile & pr, uint32_t seed, const std::vector<llama_logit_bias> & bias, int32_t n_vocab) {
    llama_sampler * c = llama_sampler_chain_init(llama_sampler_chain_default_params());
    if (!bias.empty()) {
        llama_sampler_chain_add(c, llama_sampler_init_logit_bias(n_vocab, (int32_t) bias.size(), bias.data()));
    }
    llama_sampler_chain_add(c, llama_sampler_init_top_k(pr.top_k));
    if (pr.top_p_before_temp) {
        llama_sampler_chain_add(c, llama_sampler_init_top_p(pr.top_p, 1));
        llama_sampler_chain_add(c, llama_sampler_init_min_p(pr.min_p, 1));
        llama_sampler_chain_add(c, llama_sampler_init_temp(pr.temp));
    } else {
        llama_sampler_chain_add(c, llama_sampler_init_temp(pr.temp));
        llama_sampler_chain_add(c, llama_sampler_init_top_p(pr.top_p, 1));
    }
    llama_sampler_chain_add(c, llama_sampler_init_dist(seed));
    return c;
}

// The op's parameter row for the same chain.
std::vector<float> op_params(const profile & pr, float u, const std::vector<llama_logit_bias> & bias) {
    std::vector<float> p(GGML_SAMPLE_ROWS_N_PARAMS, 0.0f);
    int n = 0;
    auto step = [&](ggml_sample_step t, float v) {
        p[GGML_SAMPLE_ROWS_STEPS + 3*n + 0] = (float) t;
        p[GGML_SAMPLE_ROWS_STEPS + 3*n + 1] = v;
        p[GGML_SAMPLE_ROWS_STEPS + 3*n + 2] = 1.0f;
        n++;
    };
    step(GGML_SAMPLE_STEP_TOP_K, (float) pr.top_k);
    if (pr.top_p_before_temp) {
        step(GGML_SAMPLE_STEP_TOP_P, pr.top_p);
        step(GGML_SAMPLE_STEP_MIN_P, pr.min_p);
        step(GGML_SAMPLE_STEP_TEMP, pr.temp);
    } else {
        step(GGML_SAMPLE_STEP_TEMP, pr.temp);
        step(GGML_SAMPLE_STEP_TOP_P, pr.top_p);
    }
    step(GGML_SAMPLE_STEP_DIST, 0.0f);
    p[0] = u;
    p[1] = (float) n;
    p[2] = (float) bias.size();
    for (size_t j = 0; j < bias.size(); ++j) {
        p[GGML_SAMPLE_ROWS_BIAS + 2*j]     = (float) bias[j].token;
        p[GGML_SAMPLE_ROWS_BIAS + 2*j + 1] = bias[j].bias;
    }
    return p;
}

struct device_op {
    std::string    name;
    ggml_backend_t backend;
};

std::vector<device_op> devices() {
    std::vector<device_op> out;
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        const auto type = ggml_backend_dev_type(dev);
        if (type != GGML_BACKEND_DEVICE_TYPE_CPU && type != GGML_BACKEND_DEVICE_TYPE_GPU) {
            continue;
        }
        ggml_backend_t be = ggml_backend_dev_init(dev, nullptr);
        if (be == nullptr) {
            continue;
        }
        out.push_back({ std::string(ggml_backend_dev_name(dev)) + " (" + ggml_backend_dev_description(dev) + ")", be });
    }
    // the CPU first: it is the reference the others are compared with
    std::stable_sort(out.begin(), out.end(), [](const device_op & a, const device_op & b) {
        return ggml_backend_dev_type(ggml_backend_get_device(a.backend)) == GGML_BACKEND_DEVICE_TYPE_CPU &&
               ggml_backend_dev_type(ggml_backend_get_device(b.backend)) != GGML_BACKEND_DEVICE_TYPE_CPU;
    });
    return out;
}

// Runs the op on a device: logits [n_vocab, n_rows] (row-major), params [N_PARAMS, n_rows].
// With repeat > 0, also returns the median seconds of repeat further runs.
std::vector<int32_t> run_op(const device_op & d, const std::vector<float> & logits, const std::vector<float> & params,
                            int64_t n_vocab, int64_t n_rows, int repeat = 0, double * median_s = nullptr) {
    ggml_init_params ip = { ggml_tensor_overhead()*8 + ggml_graph_overhead(), nullptr, true };
    ggml_context * ctx = ggml_init(ip);
    ggml_tensor * a = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n_vocab, n_rows);
    ggml_tensor * p = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, GGML_SAMPLE_ROWS_N_PARAMS, n_rows);
    ggml_tensor * out = ggml_sample_rows(ctx, a, p);
    ggml_cgraph * gf = ggml_new_graph(ctx);
    ggml_build_forward_expand(gf, out);
    ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors(ctx, d.backend);
    ggml_backend_tensor_set(a, logits.data(), 0, ggml_nbytes(a));
    ggml_backend_tensor_set(p, params.data(), 0, ggml_nbytes(p));
    std::vector<int32_t> res(n_rows, -2);
    // poison the output so a row the op skipped shows
    ggml_backend_tensor_set(out, res.data(), 0, ggml_nbytes(out));
    if (ggml_backend_graph_compute(d.backend, gf) != GGML_STATUS_SUCCESS) {
        fprintf(stderr, "graph compute failed on %s\n", d.name.c_str());
        exit(1);
    }
    ggml_backend_tensor_get(out, res.data(), 0, ggml_nbytes(out));
    if (repeat > 0 && median_s != nullptr) {
        std::vector<double> t;
        for (int i = 0; i < repeat; ++i) {
            const auto t0 = std::chrono::steady_clock::now();
            ggml_backend_graph_compute(d.backend, gf);
            ggml_backend_synchronize(d.backend);
            t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        }
        std::sort(t.begin(), t.end());
        *median_s = t[t.size()/2];
    }
    ggml_backend_buffer_free(buf);
    ggml_free(ctx);
    return res;
}

// Upper tail of the chi-square distribution (regularized incomplete gamma, series/continued fraction).
double chi2_sf(double x, double k) {
    const double a = k/2, z = x/2;
    if (z <= 0) {
        return 1.0;
    }
    const double lg = std::lgamma(a);
    if (z < a + 1) {
        double sum = 1.0/a, term = sum;
        for (int n = 1; n < 100000; ++n) {
            term *= z/(a + n);
            sum += term;
            if (term < sum*1e-15) {
                break;
            }
        }
        return 1.0 - sum*std::exp(-z + a*std::log(z) - lg);
    }
    double b = z + 1 - a, c = 1e300, d = 1/b, h = d;
    for (int i = 1; i < 100000; ++i) {
        const double an = -i*(i - a);
        b += 2;
        d = an*d + b; d = std::fabs(d) < 1e-300 ? 1e-300 : d; d = 1/d;
        c = b + an/c; c = std::fabs(c) < 1e-300 ? 1e-300 : c;
        h *= d*c;
        if (std::fabs(d*c - 1) < 1e-15) {
            break;
        }
    }
    return std::exp(-z + a*std::log(z) - lg)*h;
}

// Two-sample chi-square test of homogeneity; tokens seen fewer than 10 times in both samples
// together are pooled into one bin.
double two_sample_p(const std::map<int32_t, int> & x, const std::map<int32_t, int> & y, int * dof) {
    std::map<int32_t, std::pair<int, int>> bins;
    for (auto & [t, n] : x) bins[t].first += n;
    for (auto & [t, n] : y) bins[t].second += n;
    std::vector<std::pair<double, double>> cells;
    double px = 0, py = 0;
    for (auto & [t, c] : bins) {
        if (c.first + c.second < 10) {
            px += c.first; py += c.second;
        } else {
            cells.push_back({ (double) c.first, (double) c.second });
        }
    }
    if (px + py > 0) cells.push_back({ px, py });
    double nx = 0, ny = 0;
    for (auto & c : cells) { nx += c.first; ny += c.second; }
    double chi = 0;
    for (auto & c : cells) {
        const double tot = c.first + c.second;
        const double ex = tot*nx/(nx + ny), ey = tot*ny/(nx + ny);
        chi += (c.first - ex)*(c.first - ex)/ex + (c.second - ey)*(c.second - ey)/ey;
    }
    *dof = (int) cells.size() - 1;
    return *dof > 0 ? chi2_sf(chi, *dof) : 1.0;
}

int stock_token(llama_sampler * chain, const std::vector<float> & logits, int64_t off, int64_t n_vocab) {
    std::vector<llama_token_data> cur(n_vocab);
    for (int64_t i = 0; i < n_vocab; ++i) {
        cur[i] = { (llama_token) i, logits[off + i], 0.0f };
    }
    llama_token_data_array arr = { cur.data(), (size_t) n_vocab, -1, false };
    llama_sampler_apply(chain, &arr);
    return arr.data[arr.selected].id;
}

int check(int64_t n_vocab, int n_draws, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 2.0f);
    std::uniform_real_distribution<double> ud(0.0, 1.0);
    const auto devs = devices();
    int failures = 0;

    // (1) greedy: logits rounded to 1/8 so that ties are common, including at the maximum
    {
        const int64_t n_rows = 64;
        std::vector<float> logits(n_vocab*n_rows);
        for (auto & v : logits) v = std::round(nd(rng)*8.0f)/8.0f;
        for (int64_t r = 0; r < n_rows; r += 4) {
            logits[r*n_vocab + 5] = logits[r*n_vocab + 9] = 40.0f;  // a tie at the top
        }
        struct greedy_chain { const char * name; int top_k; float temp; bool greedy; };
        for (const greedy_chain gc : { greedy_chain{ "greedy", 0, 0.0f, true }, greedy_chain{ "temperature 0", 0, 0.0f, false },
                                       greedy_chain{ "top-k 1", 1, 1.0f, false } }) {
            std::vector<float> params;
            std::vector<int32_t> want;
            for (int64_t r = 0; r < n_rows; ++r) {
                llama_sampler * c = llama_sampler_chain_init(llama_sampler_chain_default_params());
                std::vector<float> p(GGML_SAMPLE_ROWS_N_PARAMS, 0.0f);
                if (gc.greedy) {
                    llama_sampler_chain_add(c, llama_sampler_init_greedy());
                    p[1] = 1; p[GGML_SAMPLE_ROWS_STEPS] = GGML_SAMPLE_STEP_GREEDY;
                } else {
                    llama_sampler_chain_add(c, llama_sampler_init_top_k(gc.top_k));
                    llama_sampler_chain_add(c, llama_sampler_init_temp(gc.temp));
                    llama_sampler_chain_add(c, llama_sampler_init_dist(seed + r));
                    p[0] = (float) ud(rng); p[1] = 3;
                    p[GGML_SAMPLE_ROWS_STEPS + 0] = GGML_SAMPLE_STEP_TOP_K; p[GGML_SAMPLE_ROWS_STEPS + 1] = (float) gc.top_k;
                    p[GGML_SAMPLE_ROWS_STEPS + 3] = GGML_SAMPLE_STEP_TEMP;  p[GGML_SAMPLE_ROWS_STEPS + 4] = gc.temp;
                    p[GGML_SAMPLE_ROWS_STEPS + 6] = GGML_SAMPLE_STEP_DIST;
                }
                want.push_back(stock_token(c, logits, r*n_vocab, n_vocab));
                llama_sampler_free(c);
                params.insert(params.end(), p.begin(), p.end());
            }
            for (const auto & d : devs) {
                const auto got = run_op(d, logits, params, n_vocab, n_rows);
                int diff = 0;
                for (int64_t r = 0; r < n_rows; ++r) diff += got[r] != want[r];
                printf("greedy %-14s %-40s %2d of %lld rows differ from llama.cpp's sampler: %s\n", gc.name, d.name.c_str(),
                       diff, (long long) n_rows, diff == 0 ? "ok" : "FAIL");
                failures += diff != 0;
            }
        }
    }

    // (2) sampled: Zipf-like logits (a few tokens hold most of the mass, as in a real model's
    //     answer), a random permutation of token ids, and EOS-style biases on two tokens
    {
        std::vector<float> logits(n_vocab);
        std::vector<int32_t> perm(n_vocab);
        for (int64_t i = 0; i < n_vocab; ++i) perm[i] = (int32_t) i;
        std::shuffle(perm.begin(), perm.end(), rng);
        for (int64_t i = 0; i < n_vocab; ++i) logits[perm[i]] = -0.8f*std::log((float) (i + 1)) + 0.05f*nd(rng);
        const std::vector<llama_logit_bias> bias = { { perm[0], -INFINITY }, { perm[3], 1.5f } };
        for (const auto & pr : PROFILES) {
            std::map<int32_t, int> stock;
            llama_sampler * c = stock_chain(pr, seed, bias, (int32_t) n_vocab);
            for (int i = 0; i < n_draws; ++i) stock[stock_token(c, logits, 0, n_vocab)]++;
            llama_sampler_free(c);

            std::vector<float> params;
            for (int i = 0; i < n_draws; ++i) {
                const auto p = op_params(pr, (float) ud(rng), bias);
                params.insert(params.end(), p.begin(), p.end());
            }
            // the draws in batches of rows that all hold the same logits
            const int batch = 500;
            std::vector<float> rows;
            for (int i = 0; i < batch; ++i) rows.insert(rows.end(), logits.begin(), logits.end());
            std::vector<int32_t> ref;
            for (const auto & d : devs) {
                std::vector<int32_t> got;
                for (int i0 = 0; i0 < n_draws; i0 += batch) {
                    const int n = std::min(batch, n_draws - i0);
                    const std::vector<float> pb(params.begin() + (size_t) i0*GGML_SAMPLE_ROWS_N_PARAMS,
                                                params.begin() + (size_t) (i0 + n)*GGML_SAMPLE_ROWS_N_PARAMS);
                    const auto part = run_op(d, rows, pb, n_vocab, n);
                    got.insert(got.end(), part.begin(), part.end());
                }
                std::map<int32_t, int> ours;
                int bad = 0;
                for (auto t : got) { ours[t]++; bad += t < 0 || t >= n_vocab || t == perm[0]; }
                int dof = 0;
                const double p = two_sample_p(stock, ours, &dof);
                const bool ok = p > 1e-3 && bad == 0;
                printf("sampled %-58s %-40s chi-square p = %.3f (%d dof, %d draws each, %zu distinct tokens): %s\n",
                       pr.name.c_str(), d.name.c_str(), p, dof, n_draws, ours.size(), ok ? "ok" : "FAIL");
                failures += !ok;
                if (ref.empty()) {
                    ref = got;
                } else {
                    int diff = 0;
                    for (int i = 0; i < n_draws; ++i) diff += got[i] != ref[i];
                    const bool same = diff <= n_draws/200;
                    printf("same draws %-55s %-40s %d of %d tokens differ from the CPU op: %s\n", pr.name.c_str(),
                           d.name.c_str(), diff, n_draws, same ? "ok" : "FAIL");
                    failures += !same;
                }
            }
        }
    }
    printf("%s\n", failures == 0 ? "all checks passed" : "CHECKS FAILED");
    return failures == 0 ? 0 : 1;
}

int bench(uint32_t seed, float sigma) {
    const int64_t n_vocab = 151936;
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, sigma);
    std::uniform_real_distribution<double> ud(0.0, 1.0);
    const auto devs = devices();
    const char * team = getenv("GGML_CUDA_SAMPLE_ROWS_TEAM");
    printf("logits N(0, %g^2); GGML_CUDA_SAMPLE_ROWS_TEAM=%s\n\n", sigma, team ? team : "(unset: one block per row)");
    printf("| device | sampling | rows | median per op |\n|---|---|---:|---:|\n");
    for (const auto & d : devs) {
        for (const auto & pr : PROFILES) {
            for (int64_t n_rows : { 1, 2, 16, 64 }) {
                std::vector<float> logits(n_vocab*n_rows), params;
                for (auto & v : logits) v = nd(rng);
                for (int64_t r = 0; r < n_rows; ++r) {
                    const auto p = op_params(pr, (float) ud(rng), {});
                    params.insert(params.end(), p.begin(), p.end());
                }
                double med = 0;
                const bool cpu = ggml_backend_dev_type(ggml_backend_get_device(d.backend)) == GGML_BACKEND_DEVICE_TYPE_CPU;
                run_op(d, logits, params, n_vocab, n_rows, cpu ? 3 : 50, &med);
                printf("| %s | %s | %lld | %.1f us |\n", d.name.c_str(), pr.name.c_str(), (long long) n_rows, med*1e6);
            }
        }
    }
    return 0;
}

} // namespace

int main(int argc, char ** argv) {
    std::string mode = "check";
    int64_t n_vocab = 8192;
    int n_draws = 20000;
    uint32_t seed = 1234;
    float sigma = 3.0f;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "check" || a == "bench") mode = a;
        else if (a == "--vocab" && i + 1 < argc) n_vocab = std::atoll(argv[++i]);
        else if (a == "--draws" && i + 1 < argc) n_draws = std::atoi(argv[++i]);
        else if (a == "--seed" && i + 1 < argc) seed = (uint32_t) std::atoll(argv[++i]);
        else if (a == "--sigma" && i + 1 < argc && std::atof(argv[i + 1]) > 0) sigma = (float) std::atof(argv[++i]);
        else { fprintf(stderr, "usage: %s [check|bench] [--vocab N] [--draws N] [--seed N] [--sigma S > 0]\n", argv[0]); return 2; }
    }
    llama_log_set([](ggml_log_level, const char *, void *) {}, nullptr);
    ggml_log_set([](ggml_log_level, const char *, void *) {}, nullptr);
    llama_backend_init();
    const int rc = mode == "bench" ? bench(seed, sigma) : check(n_vocab, n_draws, seed);
    llama_backend_free();
    return rc;
}
