"""Hand-written grading cases: the outputs the issue names one by one, written and judged by hand.

Each entry names a real bundled item (benchmark and item id); build.py loads the item and
adds the case with an id ending in hNNN. `human` follows the human-verdict rules in README.md;
`answer` is what a careful reader takes from the output ("" = none).
"""


def H(benchmark, item, protocol, style, output, human, answer):
    return {"benchmark": benchmark, "item": item, "protocol": protocol, "style": style, "output": output,
            "human": human, "human_answer": answer}


LAUNDRY = ("Each room has 2 sheets, 1 comforter, 2 * 2 = 4 pillow cases and 2 * 4 = 8 towels.\n"
           "So one room needs 2 + 1 + 4 + 8 = 15 pieces of laundry.\n")
EGGS = "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\nShe makes 9 * 2 = $18 every day at the farmer's market.\n"
TEMP = "The temperature dropped to 2 - 8 = -6 degrees overnight.\nThen it rose by 3 degrees to -6 + 3 = -3 degrees.\n"
HOUSE = ("The value after the repairs is 2.5x, and the cost is x + 50000.\n"
         "The profit is 2.5x - x - 50000 = 1.5x - 50000 = 70000, so 1.5x = 120000.\n")
RATIO = ("The expression $\\frac{x+y}{x-y}$ is largest when the numerator is as small in size as possible "
         "relative to the denominator. Checking the corners of the rectangle of allowed values, "
         "$x=-5$ and $y=2$ give $\\frac{-3}{-7}$.\n")
MATRIX = ("We use $(\\mathbf{A}\\mathbf{B})^{-1} = \\mathbf{B}^{-1}\\mathbf{A}^{-1}$.\n")
GENERIC = "Let's look at each option in turn and check it against the facts in the statement.\n"

CASES = [
    # --- run-ons into an invented next problem -------------------------------------------
    H("gsm8k", "0467", "mammoth2", "run-on",
      LAUNDRY + "For 80 rooms that is 15 * 80 = 1200 pieces.\nThe answer is 1200\n\nProblem:\nA bakery packs 7 boxes "
      "with 3 cookies each. How many cookies does it pack?\nSolution:\n7 * 3 = 21\nThe answer is 21", True, "1200"),
    H("gsm8k", "0467", "mammoth2", "run-on",
      LAUNDRY + "For 80 rooms that is 14 * 80 = 1120 pieces.\nThe answer is 1120\nProblem:\nHow many pieces of laundry "
      "are there in 80 rooms if each room has 15 pieces?\nSolution:\n15 * 80 = 1200\nThe answer is 1200", False, "1120"),
    H("gsm8k", "0467", "metamath", "run-on",
      LAUNDRY + "For 80 rooms that is 15 * 80 = 1200 pieces.\nThe answer is: 1200\n\nQuestion: Tom has 3 apples and buys "
      "4 more. How many apples does he have?\nAnswer: 3 + 4 = 7\nThe answer is: 7", True, "1200"),
    H("gsm8k", "0000", "metamath", "run-on",
      "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\nThe answer is: 7\n\nQuestion: Janet sells 9 eggs for $2 each. "
      "How much does she make?\nAnswer: 9 * 2 = 18\nThe answer is: 18", False, "7"),
    H("math", "intermediate_algebra/885.json", "mammoth2", "run-on",
      RATIO + "The answer is \\frac{3}{7}\n\nProblem:\nWhat is the smallest possible value of $\\frac{x+y}{x-y}$?\n"
      "Solution:\nThe answer is -\\frac{1}{7}", True, "\\frac{3}{7}"),
    H("theoremqa", "wenhuchen/newton3.json", "metamath", "run-on",
      "Starting from x0 = 1.5 and iterating x - f(x)/f'(x) a few times, the iterates settle.\nThe answer is: 1.42\n\n"
      "### Instruction:\nSolve x^2 = 5 with Newton's method.\n\n### Response: Let's think step by step.\nThe answer is: 2.236",
      True, "1.42"),
    H("arc", "0012", "mammoth2", "run-on",
      GENERIC + "The answer is (B)\n\nProblem:\nWhich temperature is most likely on a sunny, mild afternoon?\n"
      "Options are:\n(A): 32° F\n(B): 41° F\n(C): 78° F\n(D): 98° F\nSolution:\nThe answer is (C)", False, "B"),

    # --- multiple choice in every phrasing ------------------------------------------------
    H("arc", "0012", "chat", "mc-text-bare",
      "A sunny, mild day warms up well above the morning's 41°F, but not to a heat-wave temperature.\n\n78° F", True, "C"),
    H("arc", "0012", "mammoth2", "mc-text", "The afternoon stays at the morning temperature. The answer is 41° F.",
      False, "B"),
    H("arc", "0012", "metamath", "mc-lower", "It warms up during a sunny day.\nThe answer is: (c)", True, "C"),
    H("arc", "0012", "chat", "mc-tentative", "It should warm up noticeably, but a mild day is not hot.\n\nC, I think.",
      True, "C"),
    H("arc", "0012", "chat", "mc-justified",
      "(D) is correct, since the Sun heats the city strongly during the day.", False, "D"),
    H("arc", "0012", "mammoth2", "mc-because",
      "The answer is option C because a mild day warms up but does not get hot.", True, "C"),
    H("arc", "0012", "chat", "mc-number", "A mild afternoon is warmer than the morning, so the correct choice is option 3.",
      True, "C"),
    H("arc", "0012", "mammoth2", "mc-hedge", GENERIC + "The answer is either (C) or (D).", False, ""),
    H("arc", "0012", "chat", "mc-negation", "It is not (A): the temperature will not drop below freezing.", False, ""),
    H("arc", "0012", "metamath", "mc-negation",
      "It is not (B), since the temperature rises during the day.\nThe answer is: (C)", True, "C"),
    H("mmlu_stem", "0879", "chat", "mc-text-bare",
      "The tangential and centripetal accelerations are both 10 m/s², so the acceleration makes equal angles "
      "with the two directions.\n\nThe angle is 45°.", True, "C"),
    H("mmlu_stem", "0879", "mammoth2", "mc-because",
      "The answer is option A because the speed is increasing along the velocity.", False, "A"),
    H("mmlu_stem", "1592", "mammoth2", "mc-text",
      "The average is (27 + (-125)) / 2 = -49 degrees Celsius. The answer is -49°C", True, "B"),
    H("mmlu_stem", "1592", "chat", "mc-text", "The average is (27 - 125)/2.\n\n**Answer:** 49°C", False, "C"),
    H("mmlu_stem", "0000", "mammoth2", "mc-text",
      "The permutation p has order 6, so <p> has 6 elements and the index is 120 / 6 = 20. Hmm, the cycle "
      "(1, 2, 5, 4)(2, 3) is a 5-cycle, of order 5, so the index is 120 / 5 = 24. The answer is 24", True, "C"),
    H("mmlu_stem", "0000", "chat", "mc-letter-text",
      "The product is a 5-cycle, so the subgroup has order 5 and index 120/5 = 24, which is choice C.", True, "C"),
    H("mmlu_stem", "0001", "metamath", "mc-text",
      "Checking x = 0 gives 0, and x = 4 gives 4^5 + 3*4^3 + 4^2 + 2*4 = 0 mod 5.\nThe answer is: 0,4", True, "D"),
    H("gpqa", "rec0Arme2jcXQZnAW", "chat", "mc-text", "Counting the distinct signals gives eleven.\n\n**Answer: 11**",
      True, "C"),
    H("gpqa", "rec0Arme2jcXQZnAW", "mammoth2", "mc-text", "Counting the distinct signals gives twelve. The answer is 12",
      False, "A"),
    H("gpqa", "rec06pnAkLOr2t2mp", "mammoth2", "stop-cut",
      "The energy uncertainty is about hbar / tau, roughly 10^-7 eV for the shorter lifetime, so the difference must be "
      "larger than that.\n#### A", False, ""),
    H("gpqa", "rec06pnAkLOr2t2mp", "metamath", "mc-lower",
      "The difference has to exceed hbar/tau, about 10^-7 eV.\nThe answer is: a", True, "A"),
    H("bbh", "date_understanding/000", "mammoth2", "mc-text",
      "Christmas Eve of 1937 is 12/24/1937, so tomorrow is Christmas Day. The answer is 12/25/1937.", True, "(B)"),
    H("bbh", "date_understanding/000", "chat", "mc-lower", "Tomorrow is December 25, 1937.\n\nThe answer is (b).", True,
      "(B)"),
    H("bbh", "date_understanding/000", "metamath", "mc-hedge",
      "Tomorrow is Christmas Day.\nThe answer is: (B) or (E)", False, ""),
    H("theoremqa", "xinyi/fisher_information_4.json", "mammoth2", "mc-upper",
      "For independent observations the Fisher information adds up. The answer is (C)", True, "(c)"),
    H("theoremqa", "xinyi/fisher_information_4.json", "chat", "mc-justified",
      "Fisher information is additive over independent samples, so $J_g(\\theta) = 2J_f(\\theta)$, which is option (c).",
      True, "(c)"),
    H("theoremqa", "xinyi/fisher_information_4.json", "metamath", "mc-hedge",
      "The information doubles or stays the same.\nThe answer is: either (b) or (c)", False, ""),

    # --- numbers -------------------------------------------------------------------------------
    H("gsm8k", "0467", "mammoth2", "phrase+near-miss", LAUNDRY + "For 80 rooms that is 15 * 80 = 1201 pieces.\n"
      "The answer is 1201", False, "1201"),
    H("gsm8k", "0467", "chat", "bold+thousands", LAUNDRY + "\n**Final answer:** 1,200 pieces of laundry", True, "1200"),
    H("gsm8k", "0467", "chat", "phrase+number-words", LAUNDRY + "\nThe answer is one thousand two hundred.", True, "1200"),
    H("gsm8k", "0467", "mammoth2", "phrase+number-words", LAUNDRY + "The answer is twelve hundred", True, "1200"),
    H("gsm8k", "0467", "mammoth2", "phrase+sci", LAUNDRY + "The answer is $1.2 \\times 10^3$", True, "1200"),
    H("gsm8k", "0467", "mammoth2", "phrase+because",
      LAUNDRY + "The answer is 1200, since 80 rooms times 15 pieces each.", True, "1200"),
    H("gsm8k", "0467", "metamath", "hedge", LAUNDRY + "The answer is: 1200 or 1280, depending on the towels.", False, ""),
    H("gsm8k", "0467", "chat", "negation", LAUNDRY + "\nThe answer is not 1120; it is 1200.", True, "1200"),
    H("gsm8k", "1113", "mammoth2", "phrase+signed-words", TEMP + "The answer is negative 3", True, "-3"),
    H("gsm8k", "1113", "chat", "no-phrase+signed-words", TEMP + "\nSo in the morning it was 3 degrees below zero.", True,
      "-3"),
    H("gsm8k", "1113", "metamath", "phrase+sign-flip", TEMP + "The answer is: 3", False, "3"),
    H("gsm8k", "1113", "mammoth2", "phrase+unicode-minus", TEMP + "The answer is \u22123", True, "-3"),
    H("gsm8k", "1113", "chat", "bold+units", TEMP + "\n**Answer:** \u22123 °C", True, "-3"),
    H("gsm8k", "0489", "mammoth2", "phrase+trailing-zeros",
      "The sum is -48 + 21 + (-3) = -30, and -30 / 3 = -10.\nThe answer is -10.0", True, "-10"),
    H("gsm8k", "0489", "metamath", "phrase+signed-words",
      "The sum is -48 + 21 - 3 = -30, and -30 / 3 = -10.\nThe answer is: minus 10", True, "-10"),
    H("gsm8k", "0000", "metamath", "hash", EGGS + "#### 18", True, "18"),
    H("gsm8k", "0000", "chat", "bold+currency", EGGS + "\n**Final answer:** \\$18", True, "18"),
    H("gsm8k", "0000", "chat", "bare-line+currency", EGGS + "\n18 dollars", True, "18"),
    H("gsm8k", "0000", "mammoth2", "phrase+currency", EGGS + "The answer is $18.00", True, "18"),
    H("gsm8k", "0000", "mammoth2", "phrase-colon", EGGS + "The answer is: 18", True, "18"),
    H("gsm8k", "0000", "metamath", "phrase+distractor", "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\nThe answer is: 9",
      False, "9"),
    H("gsm8k_backward", "0000", "metamath", "phrase", HOUSE + "So x = 80000.\nThe answer is: 80000", True, "80000"),
    H("gsm8k_backward", "0000", "metamath", "phrase+thousands", HOUSE + "The answer is: 80,000", True, "80000"),
    H("gsm8k_backward", "0000", "mammoth2", "phrase+sci", HOUSE + "The answer is 8 \\times 10^4", True, "80000"),
    H("gsm8k_backward", "0000", "chat", "bold", HOUSE + "\n**x = $80,000**", True, "80000"),
    H("gsm8k_backward", "0000", "metamath", "phrase+distractor",
      "Josh makes a profit of 70000 on the house.\nThe answer is: 70000", False, "70000"),
    H("gsm8k_backward", "0001", "mammoth2", "phrase+percent",
      "After contemporary, 16 students remain; hip-hop is 60% of 20 = 12 students, so jazz is 4 of 16.\n"
      "The answer is 25%", True, "25"),
    H("theoremqa", "jianyu_xu/Stirling_number_second_kind_2.json", "mammoth2", "phrase+near-miss",
      "S(9, 3) = (3^9 - 3 * 2^9 + 3) / 6.\nThe answer is 3026", False, "3026"),
    H("theoremqa", "jianyu_xu/Stirling_number_second_kind_2.json", "chat", "boxed+thousands",
      "This is the Stirling number of the second kind $S(9,3)$.\n\n$$\\boxed{3,025}$$", True, "3025"),
    H("theoremqa", "wenhuchen/newton3.json", "mammoth2", "phrase+within-tol",
      "After three Newton steps from x0 = 1 the root is about 1.38.\nThe answer is 1.38", True, "1.38"),
    H("theoremqa", "wenhuchen/newton3.json", "metamath", "phrase+off-tol",
      "After one Newton step from x0 = 2 we get about 1.5.\nThe answer is: 1.5", False, "1.5"),
    H("theoremqa", "wenhuchen/cauchy_residue2.json", "mammoth2", "phrase+symbolic",
      "The residue of z^2 sin(1/z) at 0 is -1/6, so the integral is 2 pi i (-1/6) = -pi i / 3.\n"
      "The answer is -\\pi/3", True, "-\\pi/3"),
    H("theoremqa", "wenhuchen/cauchy_residue2.json", "chat", "phrase+sign-flip",
      "The residue at 0 is 1/6, so the integral is $\\pi i/3$.\n\nThe answer is 1.047.", False, "1.047"),
    H("theoremqa", "mingyin/inversion-theorem1.json", "chat", "minerva",
      "Using the product-to-sum formula and the Dirichlet integral, the integral equals 1.\n\n"
      "Final Answer: The final answer is $1.0$. I hope it is correct.", True, "1.0"),

    # --- MATH: no box, no phrase; fractions; intervals; matrices; tuples ------------------------
    H("math", "algebra/1891.json", "mammoth2", "phrase+frac-short",
      "As x grows, y approaches 1/5, and y = 1/5 would need -20 = -10.\nThe answer is \\frac15", True, "\\frac15"),
    H("math", "algebra/1891.json", "metamath", "phrase", "Setting $y=\\frac15$ leads to a contradiction.\n"
      "The answer is: \\frac{1}{5}", True, "\\frac{1}{5}"),
    H("math", "algebra/1891.json", "chat", "no-phrase+dfrac",
      "Solving for $x$ gives $x = \\frac{10y - 4}{5y - 1}$, which fails only when $5y = 1$.\n\n"
      "So the unattainable value is $y = \\dfrac{1}{5}$.", True, "\\dfrac{1}{5}"),
    H("math", "algebra/1891.json", "mammoth2", "phrase+decimal", "Solving for x fails when 5y - 1 = 0.\nThe answer is 0.2",
      True, "0.2"),
    H("math", "algebra/1891.json", "mammoth2", "phrase+near-miss", "Solving for x fails when 4y - 1 = 0.\n"
      "The answer is \\frac{1}{4}", False, "\\frac{1}{4}"),
    H("math", "intermediate_algebra/885.json", "chat", "no-phrase+dfrac",
      RATIO + "\nSo the largest possible value is $\\frac{x+y}{x-y} = \\frac{-3}{-7} = \\dfrac{3}{7}.$", True,
      "\\dfrac{3}{7}"),
    H("math", "intermediate_algebra/885.json", "mammoth2", "final-eq+sign-flip",
      "Taking $x=-5$ and $y=2$:\n$$\\frac{x+y}{x-y} = \\frac{-3}{7}$$\n$$= -\\dfrac{3}{7}.$$", False, "-\\dfrac{3}{7}"),
    H("math", "intermediate_algebra/885.json", "metamath", "phrase+tfrac", RATIO + "The answer is: \\tfrac{3}{7}", True,
      "\\tfrac{3}{7}"),
    H("math", "intermediate_algebra/885.json", "chat", "bold+tfrac", RATIO + "\n**Final answer:** $\\tfrac37$", True,
      "\\tfrac37"),
    H("math", "intermediate_algebra/885.json", "mammoth2", "phrase+slash", RATIO + "The answer is 3/7", True, "3/7"),
    H("math", "intermediate_algebra/885.json", "mammoth2", "phrase+rounded-decimal", RATIO + "The answer is 0.43", False,
      "0.43"),
    H("math", "intermediate_algebra/885.json", "metamath", "minerva",
      RATIO + "Final Answer: The final answer is $\\frac{3}{7}$. I hope it is correct.", True, "\\frac{3}{7}"),
    H("math", "intermediate_algebra/885.json", "chat", "two-boxes",
      "At $x=-5, y=4$ we get $\\boxed{\\frac{1}{9}}$. But at $x=-5, y=2$ the value is larger:\n\n"
      "$$\\boxed{\\frac{3}{7}}$$", True, "\\frac{3}{7}"),
    H("math", "intermediate_algebra/885.json", "mammoth2", "box-then-phrase",
      "At $x=-5, y=2$ we get $\\boxed{\\frac{3}{7}}$.\nActually, I should use the other corner.\n"
      "The answer is \\frac{1}{9}", False, "\\frac{1}{9}"),
    H("math", "intermediate_algebra/885.json", "mammoth2", "phrase-then-box",
      "The answer is \\frac{1}{9}. Wait, the corner $x=-5$, $y=2$ gives more, so the maximum is "
      "$\\boxed{\\frac{3}{7}}$.", True, "\\frac{3}{7}"),
    H("math", "algebra/327.json", "mammoth2", "phrase+interval", "We need $|9+2a| < 5$, so $-14 < 2a < -4$.\n"
      "The answer is (-7,-2)", True, "(-7,-2)"),
    H("math", "algebra/327.json", "chat", "bare-line+interval", "We need $|9+2a|<5$, i.e. $-14<2a<-4$.\n\n$$(-7, -2)$$",
      True, "(-7, -2)"),
    H("math", "algebra/327.json", "metamath", "phrase+interval-bracket", "We need $|9+2a| \\le 5$.\n"
      "The answer is: [-7,-2]", False, "[-7,-2]"),
    H("math", "algebra/327.json", "chat", "no-phrase+inequality", "We need $|9+2a|<5$, so $-14<2a<-4$.\n\n"
      "The solution is $-7 < a < -2$.", True, "-7 < a < -2"),
    H("math", "intermediate_algebra/1571.json", "mammoth2", "no-phrase+interval",
      "We need $3^x \\ge 7^x$, i.e. $(7/3)^x \\le 1$, so $x \\le 0$.\nThe domain is $(-\\infty,0]$.", True,
      "(-\\infty,0]"),
    H("math", "intermediate_algebra/1571.json", "chat", "no-phrase+inequality",
      "We need $3^x \\ge 7^x$, which holds exactly when $x \\le 0$.\n\n$x \\leq 0$ is the domain.", True, "x \\leq 0"),
    H("math", "intermediate_algebra/1571.json", "metamath", "phrase+interval-bracket",
      "We need $3^x > 7^x$, so $x < 0$.\nThe answer is: (-\\infty,0)", False, "(-\\infty,0)"),
    H("math", "algebra/2482.json", "chat", "bare-line+interval",
      "We need $x \\ge 0$ and $1 - x^2 > 0$.\n\n$[0,1)$", True, "[0,1)"),
    H("math", "algebra/2482.json", "mammoth2", "bare-line+interval-bracket",
      "We need $x > 0$ and $1 - x^2 > 0$.\n$(0,1)$", False, "(0,1)"),
    H("math", "precalculus/67.json", "chat", "bare-line+matrix",
      MATRIX + "\nMultiplying the two given inverses in that order:\n\n"
      "$$\\begin{pmatrix} 7 & 1 \\\\ -1 & -3 \\end{pmatrix}$$", True, "\\begin{pmatrix} 7 & 1 \\\\ -1 & -3 \\end{pmatrix}"),
    H("math", "precalculus/67.json", "mammoth2", "phrase+bmatrix",
      MATRIX + "The answer is \\begin{bmatrix} 7 & 1 \\\\ -1 & -3 \\end{bmatrix}", True,
      "\\begin{bmatrix} 7 & 1 \\\\ -1 & -3 \\end{bmatrix}"),
    H("math", "precalculus/67.json", "metamath", "phrase+matrix-order",
      "We multiply $\\mathbf{A}^{-1}\\mathbf{B}^{-1}$.\nThe answer is: \\begin{pmatrix} 8 & -4 \\\\ 3 & -4 \\end{pmatrix}",
      False, "\\begin{pmatrix} 8 & -4 \\\\ 3 & -4 \\end{pmatrix}"),
    H("math", "precalculus/67.json", "chat", "latex-env+matrix",
      "\\begin{align*}\n(\\mathbf{A}\\mathbf{B})^{-1} &= \\mathbf{B}^{-1}\\mathbf{A}^{-1} \\\\\n"
      "&= \\begin{pmatrix} 2 & -1 \\\\ -1 & 3 \\end{pmatrix}\\begin{pmatrix} 4 & 0 \\\\ 1 & -1 \\end{pmatrix} \\\\\n"
      "&= \\begin{pmatrix} 7 & 1 \\\\ -1 & -3 \\end{pmatrix}.\n\\end{align*}", True,
      "\\begin{pmatrix} 7 & 1 \\\\ -1 & -3 \\end{pmatrix}"),
    H("math", "intermediate_algebra/1272.json", "mammoth2", "phrase+tuple",
      "Squaring the left side gives 46 + 2 sqrt(23^2 - 28) = 46 + sqrt(2004).\nThe answer is (46,2004)", True, "(46,2004)"),
    H("math", "intermediate_algebra/1272.json", "chat", "bold+tuple", "Squaring gives $46 + \\sqrt{2004}$.\n\n"
      "**Answer:** $(m,n) = (46, 2004)$", True, "(46, 2004)"),
    H("math", "intermediate_algebra/1272.json", "metamath", "phrase+tuple-swapped", "Squaring gives 46 + sqrt(2004).\n"
      "The answer is: (2004,46)", False, "(2004,46)"),
    H("math", "counting_and_probability/124.json", "mammoth2", "phrase+thousands-latex",
      "We choose 3 of 30 men and 4 of 40 women: 4060 * 91390.\nThe answer is 371,\\!043,\\!400", True, "371043400"),
    H("math", "counting_and_probability/124.json", "chat", "boxed+no-separators",
      "$\\binom{30}{3}\\binom{40}{4} = 4060 \\cdot 91390$.\n\n$$\\boxed{371043400}$$", True, "371043400"),
    H("math", "counting_and_probability/124.json", "metamath", "phrase+thousands",
      "We choose 3 men and 4 women.\nThe answer is: 371,043,400", True, "371043400"),
    H("math", "counting_and_probability/124.json", "mammoth2", "phrase+near-miss",
      "We choose 3 men and 4 women.\nThe answer is 371,043,401", False, "371043401"),
    H("math", "intermediate_algebra/181.json", "chat", "multi-boxed",
      "Substituting $y = \\frac{x^2+4x}{x-1}$ gives $y = 6$ or $y = 12$; only $y = 12$ gives real roots.\n\n"
      "The solutions are $\\boxed{2}$ and $\\boxed{6}$.", True, "2, 6"),
    H("math", "intermediate_algebra/181.json", "mammoth2", "multi-boxed+list-partial",
      "Only the case y = 12 gives real roots, and one of them is extraneous.\nSo $\\boxed{6}$.", False, "6"),

    # --- math-verify's odd equivalences ---------------------------------------------------------
    H("math", "intermediate_algebra/568.json", "mammoth2", "phrase+factorial", "Comparing the systems, a_1 is the "
      "reciprocal of a factorial.\nThe answer is \\frac{1}{2006!}", False, "\\frac{1}{2006!}"),
    H("math", "intermediate_algebra/568.json", "metamath", "phrase", "Comparing the systems, a_1 is the reciprocal "
      "of a factorial.\nThe answer is: \\frac{1}{2004!}", True, "\\frac{1}{2004!}"),
    H("math", "intermediate_algebra/568.json", "chat", "boxed+dfrac", "Solving the Vandermonde system:\n\n"
      "$$\\boxed{\\dfrac{1}{2004!}}$$", True, "\\dfrac{1}{2004!}"),
    H("math", "algebra/2072.json", "mammoth2", "phrase+equation", "The camera and the car's final position "
      "determine the line.\nThe answer is 3x+4y+14=0", False, "3x+4y+14=0"),
    H("math", "algebra/2072.json", "metamath", "phrase+equation", "The line passes through (0,10) and the final "
      "position.\nThe answer is: 4x - 5y = -50", True, "4x - 5y = -50"),
    H("math", "precalculus/573.json", "chat", "boxed+equation", "The plane has the form "
      "$(x+y+z-6) + t(2x+3y+4z+5) = 0$.\n\n$$\\boxed{20x + 23y + 26z - 70 = 0}$$", False, "20x + 23y + 26z - 70 = 0"),
    H("math", "geometry/297.json", "mammoth2", "phrase+equation", "The vertices are equidistant from the origin.\n"
      "The answer is x^2+y^2=14", False, "x^2+y^2=14"),
    H("math", "geometry/297.json", "metamath", "phrase+equation", "The vertices are (2,-3), (2,3) and (-3,2), each "
      "at distance sqrt(13) from the origin.\nThe answer is: x^2 + y^2 = 13", True, "x^2 + y^2 = 13"),
    H("math", "intermediate_algebra/253.json", "chat", "bold+equation", "Long division gives $2x + \\frac{7}{2x-5}$.\n\n"
      "**Answer:** $y=2x$", True, "y=2x"),
    H("math", "intermediate_algebra/253.json", "mammoth2", "phrase+equation", "Long division gives 2x - 5 plus a "
      "remainder.\nThe answer is y = 2x - 5", False, "y = 2x - 5"),

    # --- true / false in prose -------------------------------------------------------------
    H("theoremqa", "elainewan/math_algebra_3.json", "chat", "bool-prose",
      "The vector (1, 1) is in W but (-1)(1, 1) = (-1, -1) is not, so W is not closed under scalar multiplication.\n\n"
      "Therefore, W is not a subspace of R^2.", True, "False"),
    H("theoremqa", "tonyxia/maxplanar3.json", "mammoth2", "bool-prose",
      "A simple planar graph has at most 2n - 4 faces, here 396 < 400. So the statement is true.", False, "True"),
    H("theoremqa", "tonyxia/maxplanar3.json", "metamath", "bool-prose",
      "By Euler's formula a simple planar graph with 200 vertices has at most 396 faces.\n"
      "So the statement is not true.", True, "False"),
    H("theoremqa", "elainewan/math_algebra_4_2.json", "mammoth2", "bool-prose",
      "T(0, 1, 2, 3, ...) = (1, 2, 3, ...), so the sequence is in the image. The answer is yes", True, "True"),
    H("theoremqa", "maxku/graphtheory6-shortestpath.json", "mammoth2", "phrase+list-order",
      "Node 0 is adjacent to node 5.\nThe answer is [5, 0]", False, "[5, 0]"),
    H("theoremqa", "maxku/graphtheory6-shortestpath.json", "chat", "phrase",
      "Node 0 connects to node 5 directly, so the path is 0 -> 5.\n\nThe answer is [0, 5].", True, "[0, 5]"),
    H("theoremqa", "mingyin/double-integral4.json", "mammoth2", "phrase+list-fractions",
      "On K, y = x, so the integral is 1/3; on L, y = x^2, so it is 1/4.\nThe answer is [1/3, 1/4]", True, "[1/3, 1/4]"),
    H("theoremqa", "mingyin/double-integral4.json", "metamath", "phrase+list-order",
      "On L the integral is 1/4 and on K it is 1/3.\nThe answer is: [0.25, 0.333]", False, "[0.25, 0.333]"),
    H("bbh", "boolean_expressions/000", "chat", "bool-prose",
      "not ( True ) = False, and False and True = False.\n\nSo the expression is false.", True, "False"),
    H("bbh", "boolean_expressions/000", "mammoth2", "phrase", "not ( True ) = False. The answer is True.", False, "True"),
    H("bbh", "formal_fallacies/000", "metamath", "bool-prose",
      "The conclusion does not follow from the premise by contraposition.\nSo the argument is not deductively valid.",
      True, "invalid"),
    H("bbh", "web_of_lies/000", "mammoth2", "bool-prose",
      "Sherrie tells the truth, so Vernell does, Alexis lies, Michaela lies, and Elanor lies. The answer is No.", True, "No"),
    H("bbh", "web_of_lies/000", "chat", "bool-prose",
      "Sherrie tells the truth, Vernell tells the truth, Alexis lies, Michaela lies.\n\nSo Elanor tells the truth.",
      False, "Yes"),
    H("bbh", "sports_understanding/000", "chat", "bool-prose",
      "Elias Lindholm is a hockey player, and beating the buzzer is a basketball phrase. So the sentence is implausible.",
      True, "no"),
    H("bbh", "navigate/000", "metamath", "bool-prose",
      "Adding up the steps, we end 3 steps forward and 6 steps left of the start.\n"
      "So we do not return to the starting point.", True, "No"),
    H("bbh", "causal_judgement/002", "mammoth2", "phrase", "The wrong medication killed John. The answer is Yes.", True,
      "Yes"),
    H("bbh", "word_sorting/000", "mammoth2", "phrase", "s comes before t. The answer is syndrome therefrom.", True,
      "syndrome therefrom"),
    H("bbh", "word_sorting/000", "chat", "phrase+order", "The sorted list is:\n\nThe answer is therefrom syndrome.", False,
      "therefrom syndrome"),
    H("bbh", "dyck_languages/000", "metamath", "phrase", "The stack is [ [, so we close both.\nThe answer is: ] ]", True,
      "] ]"),
    H("bbh", "dyck_languages/000", "mammoth2", "phrase+partial", "The stack is [ [. The answer is ]", False, "]"),
    H("bbh", "multistep_arithmetic_two/002", "chat", "phrase+number-words",
      "3 * -3 * 6 + -5 = -59, and -2 + -7 - 7 - -7 = -9, so -59 - (-9) = -50.\n\nThe answer is negative fifty.", True,
      "-50"),
    H("bbh", "multistep_arithmetic_two/002", "mammoth2", "phrase+sign-flip", "The result is 50. The answer is 50.", False,
      "50"),
    H("bbh", "object_counting/000", "metamath", "phrase+number-words",
      "flute, piano, trombone, violin, accordion, clarinet, drum, trumpet.\nThe answer is: eight", True, "8"),
    H("bbh", "object_counting/000", "chat", "phrase+distractor",
      "Counting every item in the list gives 14.\n\nThe answer is 14.", False, "14"),

    # --- programs (MAmmoTH2's program-of-thought) ---------------------------------------------
    H("gsm8k", "0000", "mammoth2", "program", "eggs = 16 - 3 - 4\nprint(eggs * 2)", True, "18"),
    H("gsm8k", "0000", "mammoth2", "program", "eggs = 16 - 3 - 4\nprint(eggs)", False, "9"),
    H("gsm8k", "0000", "mammoth2", "program", "eggs = 16 - 3 - 4\nprint('The answer is', eggs * 2)", True,
      "The answer is 18"),
    H("gsm8k", "0000", "mammoth2", "program-error", "eggs = 16 - 3 - 4\nprint(egg * 2)", False, ""),
    H("gsm8k", "0000", "mammoth2", "program-fenced", "```python\neggs = 16 - 3 - 4\nprice = 2\nprint(eggs * price)\n```",
      True, "18"),
    H("gsm8k", "0000", "mammoth2", "program-silent",
      "def solution():\n    eggs = 16 - 3 - 4\n    return eggs * 2\n# print(solution()) prints the answer", False, ""),
    H("math", "intermediate_algebra/885.json", "mammoth2", "program",
      "from fractions import Fraction\nbest = max(Fraction(x + y, x - y) for x in range(-5, -2) for y in range(2, 5))\n"
      "print(best)", True, "3/7"),
    H("theoremqa", "wenhuchen/cauchy_residue2.json", "mammoth2", "program",
      "import math\nprint(-math.pi / 3)", True, "-1.0471975511965976"),
    H("theoremqa", "wenhuchen/cauchy_residue2.json", "mammoth2", "program", "import math\nprint(math.pi / 3)", False,
      "1.0471975511965976"),

    # --- chat replies, empty, truncated, refusing --------------------------------------------
    H("gsm8k", "0005", "chat", "heading",
      "## Solution\n\nEvery second glass costs $5 * 0.6 = $3, so a pair costs $8.\n\n16 glasses are 8 pairs: 8 * $8.\n\n"
      "### Answer\n**$64**", True, "64"),
    H("gsm8k", "0005", "chat", "refusal", "I'm sorry, but I can't assist with that.", False, ""),
    H("gsm8k", "0005", "mammoth2", "truncated", "Every second glass costs 5 * 0.6 = 3 dollars, so a pair of glasses costs",
      False, ""),
    H("math", "intermediate_algebra/885.json", "chat", "truncated",
      "We want $\\frac{x+y}{x-y}$ to be as large as possible, so we", False, ""),
    H("bbh", "object_counting/000", "metamath", "empty", "", False, ""),
]
