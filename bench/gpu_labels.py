"""The label benchmark on a CUDA machine, with the recipe's 4-bit NF4 loading: 100 topics of the Python
library reference, BERTopic's TextGeneration one prompt per topic against topicq's labeller, side by side.

    python -m bench.gpu_labels --llm-model meta-llama/Llama-2-7b-chat-hf   # needs a Hugging Face login
    python -m bench.gpu_labels --llm-model /path/to/any/causal-lm          # a local folder, offline

It prints labels/s for both and the ratio, peak process and GPU memory, and every label.
"""

from bench.labels import arguments, main

if __name__ == "__main__":
    main(arguments(corpus="python_docs", n_docs=6000, min_topic_size=12, max_topics=100,
                   quantization="nf4", device="cuda", llama_cpp=False))
