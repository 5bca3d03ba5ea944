package stats

import (
	"math"
	"sort"
)

// MannWhitneyP is the two-sided p-value of the Mann-Whitney U test that a
// and b come from the same distribution: exact for small samples without
// ties, the normal approximation with tie correction otherwise.
func MannWhitneyP(a, b []float64) float64 {
	n1, n2 := len(a), len(b)
	if n1 == 0 || n2 == 0 {
		return 1
	}
	type obs struct {
		v     float64
		fromA bool
	}
	all := make([]obs, 0, n1+n2)
	for _, v := range a {
		all = append(all, obs{v, true})
	}
	for _, v := range b {
		all = append(all, obs{v, false})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v < all[j].v })
	var rankA, tieTerm float64
	ties := false
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].v == all[i].v {
			j++
		}
		rank := float64(i+j+1) / 2 // mean of ranks i+1..j
		for k := i; k < j; k++ {
			if all[k].fromA {
				rankA += rank
			}
		}
		if t := float64(j - i); t > 1 {
			ties = true
			tieTerm += t*t*t - t
		}
		i = j
	}
	u := rankA - float64(n1*(n1+1))/2
	if !ties && n1+n2 <= 40 {
		return exactP(u, n1, n2)
	}
	n := float64(n1 + n2)
	mu := float64(n1*n2) / 2
	sigma := math.Sqrt(float64(n1*n2) / 12 * ((n + 1) - tieTerm/(n*(n-1))))
	if sigma == 0 {
		return 1
	}
	z := (math.Abs(u-mu) - 0.5) / sigma
	if z < 0 {
		z = 0
	}
	return math.Min(1, math.Erfc(z/math.Sqrt2))
}

// exactP counts the arrangements whose U is at least as extreme as u.
func exactP(u float64, n1, n2 int) float64 {
	// counts[m][n] is the distribution of U for sizes m, n, built by
	// f(m,n,k) = f(m-1,n,k-n) + f(m,n-1,k).
	maxU := n1 * n2
	prev := make([][]float64, n2+1) // m-1 row
	for n := 0; n <= n2; n++ {
		prev[n] = make([]float64, maxU+1)
		prev[n][0] = 1 // m = 0: U is 0 in exactly one way
	}
	for m := 1; m <= n1; m++ {
		cur := make([][]float64, n2+1)
		cur[0] = make([]float64, maxU+1)
		cur[0][0] = 1
		for n := 1; n <= n2; n++ {
			cur[n] = make([]float64, maxU+1)
			for k := 0; k <= m*n; k++ {
				v := cur[n-1][k]
				if k-n >= 0 {
					v += prev[n][k-n]
				}
				cur[n][k] = v
			}
		}
		prev = cur
	}
	dist := prev[n2]
	var total, tail float64
	mu := float64(maxU) / 2
	dev := math.Abs(u - mu)
	for k, c := range dist {
		total += c
		if math.Abs(float64(k)-mu) >= dev-1e-9 {
			tail += c
		}
	}
	return math.Min(1, tail/total)
}
